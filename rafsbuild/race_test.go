//go:build race

package rafsbuild_test

// raceDetector: the race detector reserves terabytes of address space, so
// tests cannot cap it (see inLimitedChild).
const raceDetector = true
