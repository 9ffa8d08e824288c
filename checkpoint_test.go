package logx

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logx-dev/logx/internal/store"
	"github.com/stretchr/testify/require"
)

// listFiles returns the rotated files' lists in dir.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), rotatedListPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// rawRotated is state.json's "rotated" value.
func rawRotated(t *testing.T, dir string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	require.NoError(t, err)
	var v struct{ Rotated json.RawMessage }
	require.NoError(t, json.Unmarshal(b, &v))
	return v.Rotated
}

// TestCheckpointRotatedList: the rotated files' list lives in a file of its
// own, written only when it changes, so a checkpoint's cost does not grow
// with the retained files (before, every checkpoint, once a second under
// traffic, rewrote and fsynced the whole list: about 5 MB with 30 days of
// 64 MiB files at 2,000 lines/s). state.json names the list; the list
// survives a restart, the old one goes when a new one is named, and a
// start removes lists no state.json names. A state.json that holds the
// list itself (before 2026-12-06) is read, then written in the new form.
func TestCheckpointRotatedList(t *testing.T) {
	dir := t.TempDir()
	policy := filePolicy{rotation: store.Rotation{MaxSize: 2048}}
	f := openPolicyFSM(t, dir, policy)
	var b logBuilder
	for range 1000 {
		b.batch(1, 4, time.Unix(1700000000, 0), "entry")
	}
	f.ApplyBatch(b.take())
	require.NoError(t, f.persist())
	rotated := len(f.st.Rotated)
	require.Greater(t, rotated, 100)
	named := func() string {
		var n string
		require.NoError(t, json.Unmarshal(rawRotated(t, dir), &n))
		return n
	}
	first := named()
	require.Contains(t, listFiles(t, dir), first)
	require.Len(t, listFiles(t, dir), 2, "the list and the one before it (the start's, empty)")
	info, err := os.Stat(filepath.Join(dir, stateFile))
	require.NoError(t, err)
	require.Less(t, info.Size(), int64(2048), "state.json without the list of %d files", rotated)
	// An earlier version, which reads the list from "rotated", refuses it
	// rather than take it for a log without rotated files.
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	require.NoError(t, err)
	var earlier applyState
	require.ErrorContains(t, json.Unmarshal(raw, &earlier), "cannot unmarshal string")
	listInfo, err := os.Stat(filepath.Join(dir, first))
	require.NoError(t, err)
	require.Greater(t, listInfo.Size(), int64(100*rotated))

	// A checkpoint without a rotation writes state.json only.
	b.batch(1, 1, time.Unix(1700000000, 0), "x")
	f.ApplyBatch(b.take())
	require.Equal(t, rotated, len(f.st.Rotated))
	require.NoError(t, os.Remove(filepath.Join(dir, first))) // it would be written again
	require.NoError(t, f.persist())
	require.NotContains(t, listFiles(t, dir), first, "the unchanged list was written again")
	require.NoError(t, os.WriteFile(filepath.Join(dir, first), mustJSON(t, f.st.Rotated), 0o644))

	// A rotation whose state.json cannot be written (its temporary name
	// is taken by a directory): the checkpoint fails, and the next one
	// still names a list that exists. Before, the node went on naming the
	// new list, which the redo's start removed: the next start failed.
	for range 20 {
		b.batch(1, 4, time.Unix(1700000000, 0), "entry")
	}
	f.ApplyBatch(b.take())
	blocker := filepath.Join(dir, stateFile+".tmp")
	require.NoError(t, os.Mkdir(blocker, 0o755))
	require.Error(t, f.persist())
	require.Equal(t, first, named())
	require.Equal(t, first, f.lists.name, "the list state.json names")
	require.NoError(t, os.Remove(blocker))
	require.NoError(t, f.persist())
	second := named()
	require.NotEqual(t, first, second)
	require.ElementsMatch(t, []string{first, second}, listFiles(t, dir), "the new list and the one before; the start's is gone")

	// Another rotation: the list before the last goes.
	for range 20 {
		b.batch(1, 4, time.Unix(1700000000, 0), "entry")
	}
	f.ApplyBatch(b.take())
	require.NoError(t, f.persist())
	now := named()
	require.ElementsMatch(t, []string{second, now}, listFiles(t, dir))
	want := f.st.Rotated
	require.NoError(t, f.close())

	// A stale list (a crash before the state that names it) goes at the
	// start; the named one is read.
	stale := filepath.Join(dir, rotatedListPrefix+"0123456789abcdef.json")
	require.NoError(t, os.WriteFile(stale, []byte("[]"), 0o644))
	require.NoError(t, os.WriteFile(stale+".tmp", []byte("["), 0o644))
	f = openPolicyFSM(t, dir, policy)
	require.Equal(t, want, f.st.Rotated)
	require.Equal(t, []string{now}, listFiles(t, dir), "a start keeps only the named list")
	require.NoError(t, f.close())

	// The older form: the list inside state.json.
	st, ok, err := readState(dir)
	require.NoError(t, err)
	require.True(t, ok)
	disk := struct {
		applyState
		Rotated []store.File `json:"rotated"`
	}{st, st.Rotated}
	require.NoError(t, os.WriteFile(filepath.Join(dir, stateFile), mustJSON(t, disk), 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, now)))
	f = openPolicyFSM(t, dir, policy)
	require.Equal(t, want, f.st.Rotated)
	// Written in the new form at once, before anything is applied: an
	// earlier version refuses the Dir even if this node never checkpoints
	// (docs/guarantees.md, "Upgrades").
	require.Len(t, listFiles(t, dir), 1, "written in the new form at the start")
	require.Equal(t, listFiles(t, dir)[0], named())
	require.NoError(t, f.persist())
	require.Len(t, listFiles(t, dir), 1, "written in the new form")
	require.NoError(t, f.close())

	// The same in the middle of a catch-up, whose start returns before the
	// files are opened: written in the new form too.
	disk.CatchingUp = true
	require.NoError(t, os.WriteFile(filepath.Join(dir, stateFile), mustJSON(t, disk), 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, listFiles(t, dir)[0])))
	f = openPolicyFSM(t, dir, policy)
	require.True(t, f.st.CatchingUp)
	require.Len(t, listFiles(t, dir), 1, "written in the new form at the start of a catch-up")
	require.Equal(t, listFiles(t, dir)[0], named())
	require.NoError(t, f.close())
	disk.CatchingUp = false
	require.NoError(t, os.WriteFile(filepath.Join(dir, stateFile), mustJSON(t, disk), 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, listFiles(t, dir)[0])))
	f = openPolicyFSM(t, dir, policy)
	require.NoError(t, f.persist())
	require.NoError(t, f.close())

	// A named list that is missing, or a name of another form: damage.
	require.NoError(t, os.Remove(filepath.Join(dir, listFiles(t, dir)[0])))
	_, _, err = readState(dir)
	require.ErrorIs(t, err, ErrCorrupt)
	b2, err := os.ReadFile(filepath.Join(dir, stateFile))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b2, &m))
	m["rotated"] = "../../etc/passwd"
	require.NoError(t, os.WriteFile(filepath.Join(dir, stateFile), mustJSON(t, m), 0o644))
	_, _, err = readState(dir)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "names the rotated files' list")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
