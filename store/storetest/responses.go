package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

// A response is read back as stored, replaced by id, and deleted once.
func testResponses(t *testing.T, open Open) {
	ctx := context.Background()
	s := open(t, Options{})
	if _, err := s.GetResponse(ctx, "resp_none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetResponse(unknown) = %v; want ErrNotFound", err)
	}
	r := store.Response{ID: "resp_1", Model: "m", Object: []byte(`{"id":"resp_1"}`), Input: []byte(`[{"type":"message"}]`), History: []byte(`[1,2]`)}
	if err := s.PutResponse(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetResponse(ctx, "resp_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != "m" || !bytes.Equal(got.Object, r.Object) || !bytes.Equal(got.Input, r.Input) || !bytes.Equal(got.History, r.History) || got.CreatedAt.IsZero() {
		t.Errorf("GetResponse = %+v; want %+v with a creation time", got, r)
	}
	r.History = []byte(`[1,2,3]`)
	if err := s.PutResponse(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetResponse(ctx, "resp_1"); string(got.History) != "[1,2,3]" {
		t.Errorf("after a replace, history %s; want [1,2,3]", got.History)
	}
	if err := s.PutResponse(ctx, store.Response{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutResponse(no id) = %v; want ErrInvalid", err)
	}
	if err := s.DeleteResponse(ctx, "resp_1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteResponse(ctx, "resp_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteResponse = %v; want ErrNotFound", err)
	}
	if _, err := s.GetResponse(ctx, "resp_1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetResponse after delete = %v; want ErrNotFound", err)
	}
}

// Retention keeps the newest MaxResponses and none past ResponseMaxAge.
func testResponseRetention(t *testing.T, open Open) {
	ctx := context.Background()
	clock := NewClock()
	const max = 40
	s := open(t, Options{Clock: clock, MaxResponses: max, ResponseMaxAge: time.Hour})
	put := func(i int) {
		t.Helper()
		if err := s.PutResponse(ctx, store.Response{ID: fmt.Sprintf("resp_%03d", i), Model: "m", Object: []byte(`{}`), Input: []byte(`[]`), History: []byte(`[]`)}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	const n = 3 * max
	for i := range n {
		put(i)
	}
	kept := 0
	for i := range n {
		_, err := s.GetResponse(ctx, fmt.Sprintf("resp_%03d", i))
		switch {
		case err == nil:
			kept++
		case !errors.Is(err, store.ErrNotFound):
			t.Fatal(err)
		}
	}
	if kept > max || kept < max-max/20 {
		t.Errorf("%d of %d responses kept; want at most %d and at least %d", kept, n, max, max-max/20)
	}
	if _, err := s.GetResponse(ctx, fmt.Sprintf("resp_%03d", n-1)); err != nil {
		t.Errorf("the newest response is gone: %v", err)
	}
	if _, err := s.GetResponse(ctx, "resp_000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the oldest response is kept past the count limit: %v", err)
	}
	clock.Advance(2 * time.Hour)
	if _, err := s.GetResponse(ctx, fmt.Sprintf("resp_%03d", n-1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a response past ResponseMaxAge is still served: %v", err)
	}
}
