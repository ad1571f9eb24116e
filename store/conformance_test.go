package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/store"
	"github.com/dso-proxy/dso/store/storetest"
)

var (
	_ storetest.Store = (*store.SQLite)(nil)
	_ storetest.Store = (*store.Redis)(nil)
)

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		s, err := store.OpenDir(context.Background(), t.TempDir(), store.Options{Clock: o.Clock, MaxTraces: o.MaxTraces, TraceMaxAge: o.TraceMaxAge})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceRedis(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	storetest.Run(t, func(t *testing.T, o storetest.Options) storetest.Store {
		n++ // one key prefix per test: the tests share the server
		s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{
			Prefix: "t" + string(rune('a'+n%26)) + string(rune('a'+n/26)) + ":",
			Clock:  o.Clock, MaxTraces: o.MaxTraces, TraceMaxAge: o.TraceMaxAge,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Open reads what the server promises; the test server fsyncs every write.
func TestRedisDurability(t *testing.T) {
	srv := redistest.Start(t)
	s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := s.Durability()
	if !d.AppendOnly || d.AppendFsync != "always" || !d.Full() || !strings.Contains(d.Survives(), "power loss") {
		t.Errorf("Durability = %+v (%s); want appendonly, always, full", d, d.Survives())
	}
	if lax := (store.Durability{AppendOnly: true, AppendFsync: "everysec"}); lax.Full() {
		t.Errorf("everysec without WAITAOF reported full")
	}
}

// A server that is not there is ErrUnavailable, quickly.
func TestRedisUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	s, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.Kill(t)
	start := time.Now()
	_, _, err = s.PutExperience(context.Background(), store.Experience{Text: "t", Confidence: 0.5})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("put with the server down: %v; want ErrUnavailable", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ping with the server down: %v; want ErrUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("reporting the server down took %v", took)
	}
	if _, err := store.OpenRedis(context.Background(), "redis://"+srv.Addr, store.RedisOptions{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("open with the server down: %v; want ErrUnavailable", err)
	}
	if _, err := store.OpenRedis(context.Background(), "redis://user:hunter2@[bad", store.RedisOptions{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("open with a bad URL: %v; want an error without the password", err)
	}
}
