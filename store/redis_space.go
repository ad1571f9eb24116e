package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/redis/go-redis/v9"
)

// GetSpace is as SQLite.GetSpace.
func (r *Redis) GetSpace(ctx context.Context, name string) (SpaceStats, error) {
	if err := r.check(); err != nil {
		return SpaceStats{}, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	blob, err := r.c.Get(ctx, r.key("space", name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return SpaceStats{}, fmt.Errorf("store: space %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return SpaceStats{}, r.fail("get space", err)
	}
	if len(blob)%4 != 0 || len(blob) == 0 {
		return SpaceStats{}, fmt.Errorf("store: space %q: mean is %d bytes", name, len(blob))
	}
	mean := make([]float32, len(blob)/4)
	for i := range mean {
		mean[i] = math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:]))
	}
	return SpaceStats{Name: name, Mean: mean}, nil
}

// PutSpace is as SQLite.PutSpace: the first stats stored for a name win.
func (r *Redis) PutSpace(ctx context.Context, sp SpaceStats) (SpaceStats, error) {
	if err := r.check(); err != nil {
		return SpaceStats{}, err
	}
	if sp.Name == "" || len(sp.Name) > MaxFieldBytes || len(sp.Mean) == 0 || len(sp.Mean) > maxSpaceDim {
		return SpaceStats{}, fmt.Errorf("store: put space: %w: name %q, %d dims", ErrInvalid, sp.Name, len(sp.Mean))
	}
	blob := make([]byte, 4*len(sp.Mean))
	for i, v := range sp.Mean {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return SpaceStats{}, fmt.Errorf("store: put space: %w: mean is not finite", ErrInvalid)
		}
		binary.LittleEndian.PutUint32(blob[4*i:], math.Float32bits(v))
	}
	bctx, cancel := r.bound(ctx)
	var set *redis.BoolCmd
	aofErr := r.durably(bctx, "put space", func(p redis.Pipeliner) { set = p.SetNX(bctx, r.key("space", sp.Name), blob, 0) })
	err := errors.Join(set.Err(), aofErr)
	cancel()
	if err != nil {
		return SpaceStats{}, r.fail("put space", err)
	}
	return r.GetSpace(ctx, sp.Name)
}

// SampleExperiences is as SQLite.SampleExperiences.
func (r *Redis) SampleExperiences(ctx context.Context, space string, n int) ([]Experience, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	bctx, cancel := r.bound(ctx)
	ids, err := r.c.SRandMemberN(bctx, r.key("acodes", space), int64(n)).Result()
	cancel()
	if err != nil {
		return nil, r.fail("sample experiences", err)
	}
	es, err := r.GetExperiences(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("store: sample experiences: %w", err)
	}
	out := es[:0]
	for _, e := range es {
		if e.Status == StatusActive && e.Space == space && len(e.Code) > 0 {
			out = append(out, e)
		}
	}
	return out, nil
}

func codeArgs(op string, us []CodeUpdate) ([]any, error) {
	args := make([]any, 0, 3*len(us))
	for _, u := range us {
		if len(u.Code) == 0 {
			return nil, fmt.Errorf("store: %s: %w: no code for %.16s", op, ErrInvalid, u.ID)
		}
		if err := checkCode(u.Code, u.Space); err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
		args = append(args, u.ID, u.Code, u.Space)
	}
	return args, nil
}

// SetCodes is as SQLite.SetCodes: one script for all.
func (r *Redis) SetCodes(ctx context.Context, us []CodeUpdate) error {
	args, err := codeArgs("set codes", us)
	if err != nil || len(us) == 0 {
		return err
	}
	_, err = r.run(ctx, "set codes", luaSetCodes, args...)
	return err
}

// CountCodes is as SQLite.CountCodes.
func (r *Redis) CountCodes(ctx context.Context, space string) (int, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	n, err := r.c.SCard(ctx, r.key("codes", space)).Result()
	if err != nil {
		return 0, r.fail("count codes", err)
	}
	return int(n), nil
}

// PutPendingCodes is as SQLite.PutPendingCodes.
func (r *Redis) PutPendingCodes(ctx context.Context, us []CodeUpdate) error {
	args, err := codeArgs("put pending codes", us)
	if err != nil || len(us) == 0 {
		return err
	}
	_, err = r.run(ctx, "put pending codes", luaPutPendingCodes, args...)
	return err
}

// PendingCodes is as SQLite.PendingCodes, scanning the pending codes a
// few hundred at a time.
func (r *Redis) PendingCodes(ctx context.Context, space string, fn func(id string, code []byte) error) error {
	if err := r.check(); err != nil {
		return err
	}
	var cursor uint64
	for {
		bctx, cancel := r.bound(ctx)
		kv, next, err := r.c.HScan(bctx, r.key("pending", space), cursor, "", 500).Result()
		cancel()
		if err != nil {
			return r.fail("pending codes", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if err := fn(kv[i], []byte(kv[i+1])); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// CommitPendingCodes is as SQLite.CommitPendingCodes, in one script.
func (r *Redis) CommitPendingCodes(ctx context.Context, space string) error {
	v, err := r.run(ctx, "commit pending codes", luaCommitPendingCodes, space)
	if err != nil {
		return err
	}
	if n, _ := v.(int64); n > 0 {
		return fmt.Errorf("store: commit pending codes: %w: %d", ErrIncomplete, n)
	}
	return nil
}
