// tlogclient reads an actlog ledger's tiles with Go's own transparency-log
// packages (golang.org/x/mod/sumdb/tlog and note, Debian's
// golang-golang-x-mod-dev), as a monitor or mirror would:
//
//   - note.Open verifies the checkpoint with the ledger's vkey;
//   - tlog.TileHashReader reads hash tiles over HTTP through the
//     `tile/8/<L>/<N>[.p/<W>]` paths Go spells;
//   - ProveRecord/CheckRecord prove random leaves, read from the C2SP entry
//     bundles, against the checkpoint's root;
//   - ProveTree/CheckTree prove an older checkpoint consistent with it.
//
// Usage: tlogclient -url http://HOST/tlog -vkey VKEY -old FILE [-token T] [-n 50] [-seed 1]
// Prints one JSON line; exits 1 with the reason on any failure.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var (
	base  = flag.String("url", "", "the log's tile prefix, e.g. http://127.0.0.1:7340/tlog")
	vkey  = flag.String("vkey", "", "the ledger's verifier key")
	token = flag.String("token", "", "bearer token, when the tlog routes are not public")
	old   = flag.String("old", "", "an earlier signed checkpoint of the same log")
	n     = flag.Int("n", 50, "random records to prove")
	seed  = flag.Int64("seed", 1, "random seed")
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogclient: "+format+"\n", args...)
	os.Exit(1)
}

func get(path string) []byte {
	req, err := http.NewRequest("GET", *base+"/"+path, nil)
	if err != nil {
		fail("%v", err)
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	req.Header.Set("Accept-Encoding", "gzip, identity")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if r, err = gzip.NewReader(resp.Body); err != nil {
			fail("GET %s: %v", path, err)
		}
	}
	body, err := io.ReadAll(r)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	if resp.StatusCode != 200 {
		fail("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// openCheckpoint verifies a signed checkpoint and returns its tree.
func openCheckpoint(text []byte, v note.Verifier) tlog.Tree {
	msg, err := note.Open(text, note.VerifierList(v))
	if err != nil {
		fail("checkpoint does not verify: %v", err)
	}
	lines := strings.Split(msg.Text, "\n")
	if len(lines) < 4 || lines[0] != v.Name() {
		fail("checkpoint text is not origin/size/root: %q", msg.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		fail("checkpoint root is not a base64 hash")
	}
	var hash tlog.Hash
	copy(hash[:], h)
	return tlog.Tree{N: size, Hash: hash}
}

// tiles reads hash tiles over HTTP in Go's spelling.
type tiles struct{ reads int }

func (t *tiles) Height() int { return 8 }

func (t *tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, tile := range ts {
		out[i] = get(tile.Path())
		if len(out[i]) != tile.W*tlog.HashSize {
			return nil, fmt.Errorf("%s has %d bytes, want %d", tile.Path(), len(out[i]), tile.W*tlog.HashSize)
		}
		t.reads++
	}
	return out, nil
}

func (t *tiles) SaveTiles([]tlog.Tile, [][]byte) {}

// index spells a tile index in C2SP's 3-digit groups.
func index(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n /= 1000; n > 0; n /= 1000 {
		s = fmt.Sprintf("x%03d/", n%1000) + s
	}
	return s
}

// entry reads leaf i of a tree of size from its C2SP entry bundle.
func entry(i, size int64) []byte {
	nt := i / 256
	path := "tile/entries/" + index(nt)
	w := int64(256)
	if (nt+1)*256 > size {
		w = size % 256
		path += fmt.Sprintf(".p/%d", w)
	}
	b := get(path)
	var found []byte
	for k := int64(0); k < w; k++ {
		if len(b) < 2 {
			fail("%s ends after %d entries, want %d", path, k, w)
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			fail("%s: entry %d is truncated", path, k)
		}
		if k == i%256 {
			found = b[2 : 2+l]
		}
		b = b[2+l:]
	}
	if len(b) != 0 {
		fail("%s has %d bytes after its %d entries", path, len(b), w)
	}
	return found
}

func main() {
	flag.Parse()
	v, err := note.NewVerifier(*vkey)
	if err != nil {
		fail("vkey: %v", err)
	}
	tree := openCheckpoint(get("checkpoint"), v)
	oldText, err := os.ReadFile(*old)
	if err != nil {
		fail("%v", err)
	}
	oldTree := openCheckpoint(oldText, v)
	if oldTree.N < 1 || oldTree.N > tree.N {
		fail("old checkpoint size %d is not in 1..%d", oldTree.N, tree.N)
	}
	reader := &tiles{}
	thr := tlog.TileHashReader(tree, reader)

	rng := rand.New(rand.NewSource(*seed))
	picks := []int64{0, tree.N - 1}
	for len(picks) < *n {
		picks = append(picks, rng.Int63n(tree.N))
	}
	for _, i := range picks {
		rh := tlog.RecordHash(entry(i, tree.N))
		p, err := tlog.ProveRecord(tree.N, i, thr)
		if err != nil {
			fail("ProveRecord(%d): %v", i, err)
		}
		if err := tlog.CheckRecord(p, tree.N, tree.Hash, i, rh); err != nil {
			fail("CheckRecord(%d): %v", i, err)
		}
		// A wrong record must not pass, or the check above proves nothing.
		wrong := rh
		wrong[0] ^= 1
		if tlog.CheckRecord(p, tree.N, tree.Hash, i, wrong) == nil {
			fail("CheckRecord(%d) accepted a wrong record hash", i)
		}
	}
	p, err := tlog.ProveTree(tree.N, oldTree.N, thr)
	if err != nil {
		fail("ProveTree(%d, %d): %v", tree.N, oldTree.N, err)
	}
	if err := tlog.CheckTree(p, tree.N, tree.Hash, oldTree.N, oldTree.Hash); err != nil {
		fail("CheckTree(%d, %d): %v", tree.N, oldTree.N, err)
	}
	h, err := tlog.TreeHash(oldTree.N, thr)
	if err != nil || !bytes.Equal(h[:], oldTree.Hash[:]) {
		fail("the tiles do not rebuild the old root (%v)", err)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"tree_size": tree.N, "old_size": oldTree.N, "records_proved": len(picks), "tile_reads": reader.reads,
	})
	fmt.Println(string(out))
}
