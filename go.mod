module github.com/nydus-go/nydusify

go 1.26.8

require (
	github.com/klauspost/compress v1.20.3
	github.com/pierrec/lz4/v4 v4.1.33
	github.com/zeebo/blake3 v0.2.4
)

require github.com/klauspost/cpuid/v2 v2.0.12 // indirect
