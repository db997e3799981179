package queue_test

import (
	"path/filepath"
	"testing"

	"github.com/mailtls/mailtls/internal/storetest"
	"github.com/mailtls/mailtls/transport/queue"
)

// TestDirStoreContract runs the Store contract (shared with the
// PostgreSQL store) against DirStore.
func TestDirStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store {
		st, err := queue.OpenDirStore(filepath.Join(t.TempDir(), "spool"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

// TestLogStoreContract runs the same contract against LogStore, with
// segments small enough that the suite crosses several of them.
func TestLogStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store {
		st, err := queue.OpenLogStore(filepath.Join(t.TempDir(), "log"), queue.LogStoreOptions{SegmentSize: 64 << 10, MaxSealedSegments: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}
