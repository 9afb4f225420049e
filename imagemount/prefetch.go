package imagemount

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// prefetch fills the caches: the files the bootstrap's prefetch table names
// (directories with everything below them), or, without a table and with
// c.All, every chunk of every blob. Each blob is fetched in chunk order
// with c.Workers requests in flight.
func (m *Mount) prefetch(ctx context.Context, c PrefetchConfig) PrefetchResult {
	start := time.Now()
	res := PrefetchResult{}
	perBlob, files, err := m.prefetchList(c.All)
	if err != nil {
		res.Err = err
		return res
	}
	res.Files = files
	var errs []error
	for i, list := range perBlob {
		if len(list) == 0 {
			continue
		}
		n, err := m.caches[i].Prefetch(ctx, list, c.Workers)
		res.Chunks += n
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	res.Err = errors.Join(errs...)
	res.Seconds = time.Since(start).Seconds()
	return res
}

// prefetchList returns the chunk-info indexes to prefetch per blob and how
// many files the prefetch table led to.
func (m *Mount) prefetchList(all bool) ([][]uint32, int, error) {
	rd := m.rd
	perBlob := make([][]uint32, len(rd.Blobs))
	nids, err := rd.PrefetchTable()
	if err != nil {
		return nil, 0, err
	}
	if len(nids) == 0 {
		if !all {
			return perBlob, 0, nil
		}
		for i := range rd.Blobs {
			perBlob[i] = m.caches[i].Blob().TableChunks()
		}
		return perBlob, 0, nil
	}
	seen := map[uint64]bool{}
	queue := make([]uint64, 0, len(nids))
	for _, nid := range nids {
		queue = append(queue, uint64(nid))
	}
	files := 0
	for len(queue) > 0 {
		nid := queue[0]
		queue = queue[1:]
		if seen[nid] {
			continue
		}
		seen[nid] = true
		n, err := rd.Node(nid)
		if err != nil {
			return nil, 0, fmt.Errorf("prefetch table entry: %w", err)
		}
		switch {
		case n.IsDir():
			ents, err := rd.ReadDir(n)
			if err != nil {
				return nil, 0, err
			}
			for _, e := range ents {
				if e.Name != "." && e.Name != ".." {
					queue = append(queue, e.Nid)
				}
			}
		case n.IsReg():
			addrs, err := rd.Chunks(n)
			if err != nil {
				return nil, 0, err
			}
			files++
			for _, a := range addrs {
				if int(a.BlobIndex) < len(perBlob) {
					perBlob[a.BlobIndex] = append(perBlob[a.BlobIndex], a.CIIndex)
				}
			}
		}
	}
	return perBlob, files, nil
}
