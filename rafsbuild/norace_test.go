//go:build !race

package rafsbuild_test

const raceDetector = false
