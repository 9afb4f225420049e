// Package zran gives random access into gzip streams, the way Nydus's zran
// mode reads file data straight from an image's original gzip layers. It
// holds its own DEFLATE/gzip decoder (Reader) that reports every restart
// point (a block end with its pending bits and 32 KiB window) and resumes
// from one (NewResumeReader); a context Builder that turns one streaming
// pass over a layer into upstream-compatible contexts for the chunks its
// consumer marks; and the codec of the context table. It knows nothing of
// RAFS. Formats and rules: docs/zran.md.
package zran
