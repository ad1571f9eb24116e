package network

import "context"

// pastFetcher is where a Sync reads the accepted tree's hashes from when
// the peer shows a smaller tree: the mirror, when it serves that tree. A
// node restarted on an empty log with the same key serves none of its
// signed past; asking it for the proof would find nothing (and so no
// fork) where the mirror proves the new tree is not a prefix of the old.
func (f *Follower) pastFetcher(peer Fetcher) Fetcher {
	m, ok := f.cfg.Mirror.(interface {
		TileSource
		Size() int64
	})
	if !ok || m.Size() < f.last.Size {
		return peer
	}
	return sourceFetcher{m}
}

// sourceFetcher reads a TileSource as a Fetcher reads a served log.
type sourceFetcher struct{ src TileSource }

func (s sourceFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	if path == "checkpoint" {
		return s.src.Checkpoint(ctx)
	}
	t, err := ParseTilePath(path)
	if err != nil {
		return nil, err
	}
	return s.src.ReadTile(ctx, t)
}
