package store_test

import (
	"context"
	"testing"

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
