package blobcache

import "os"

// SetSyncData replaces the fsync of the blob's view until restore is called.
func SetSyncData(f func(*os.File) error) (restore func()) {
	old := syncData
	syncData = f
	return func() { syncData = old }
}
