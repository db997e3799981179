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
