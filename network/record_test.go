package network

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// testKey returns a signer and its verifier for name.
func testKey(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)

func sampleExperience() *Experience {
	return &Experience{Network: "hanzo", Domain: "code.go", Text: "Check the error from Close on written files.",
		Confidence: 0.8, Space: "hash:2048", Code: bytes.Repeat([]byte{0xa5}, 484), Time: t0}
}

func sampleVote() *Vote {
	return &Vote{Network: "hanzo", Experience: ExperienceID("hanzo", "code.go", "x"), Grade: Up, Time: t0}
}

func sampleVouch(t testing.TB) *Vouch {
	_, vkey, err := note.GenerateKey(rand.Reader, "nodeB")
	if err != nil {
		t.Fatal(err)
	}
	return &Vouch{Network: "hanzo", Key: vkey, Time: t0}
}

func TestRecordRoundTrip(t *testing.T) {
	s, v := testKey(t, "nodeA")
	for _, tt := range []struct {
		name string
		r    Record
	}{
		{"experience", Record{Experience: sampleExperience()}},
		{"experience without code", Record{Experience: &Experience{Network: "n", Domain: "d", Text: "t", Time: t0}}},
		{"experience at bounds", Record{Experience: &Experience{Network: strings.Repeat("a", MaxNetworkLen),
			Domain: strings.Repeat("d", MaxDomainLen), Text: strings.Repeat("é", MaxTextLen/2), Confidence: 1,
			Space: strings.Repeat("s", MaxSpaceLen), Code: make([]byte, MaxCodeLen), Time: maxTime.Add(-time.Millisecond)}}},
		{"vote up", Record{Vote: sampleVote()}},
		{"vote graded", Record{Vote: &Vote{Network: "n-1.x_y", Grade: -37, Time: minTime}}},
		{"vouch", Record{Vouch: sampleVouch(t)}},
		{"vouch revoked", Record{Vouch: &Vouch{Network: "n", Key: sampleVouch(t).Key, Revoked: true, Time: t0}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signed, err := Sign(s, tt.r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Encode(signed)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(b, note.VerifierList(v))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, signed) {
				t.Errorf("decoded %+v; want %+v", got, signed)
			}
			if len(b) > MaxRecordLen {
				t.Errorf("%d bytes, over MaxRecordLen %d", len(b), MaxRecordLen)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	s, _ := testKey(t, "nodeA")
	exp := func(f func(*Experience)) Record {
		e := sampleExperience()
		f(e)
		return Record{Experience: e}
	}
	for _, tt := range []struct {
		name string
		r    Record
		want error
	}{
		{"empty", Record{}, ErrMalformed},
		{"both", Record{Experience: sampleExperience(), Vote: sampleVote()}, ErrMalformed},
		{"network id", exp(func(e *Experience) { e.Network = "Hanzo" }), ErrMalformed},
		{"network id path", exp(func(e *Experience) { e.Network = "../x" }), ErrMalformed},
		{"text too long", exp(func(e *Experience) { e.Text = strings.Repeat("x", MaxTextLen+1) }), ErrTooLarge},
		{"code too long", exp(func(e *Experience) { e.Code = make([]byte, MaxCodeLen+1) }), ErrTooLarge},
		{"empty text", exp(func(e *Experience) { e.Text = "" }), ErrMalformed},
		{"invalid utf8", exp(func(e *Experience) { e.Text = "\xff" }), ErrMalformed},
		{"control in domain", exp(func(e *Experience) { e.Domain = "a\nb" }), ErrMalformed},
		{"confidence NaN", exp(func(e *Experience) { e.Confidence = math.NaN() }), ErrMalformed},
		{"confidence 2", exp(func(e *Experience) { e.Confidence = 2 }), ErrMalformed},
		{"confidence -0", exp(func(e *Experience) { e.Confidence = math.Copysign(0, -1) }), ErrNonCanonical},
		{"code without space", exp(func(e *Experience) { e.Space = "" }), ErrMalformed},
		{"old time", exp(func(e *Experience) { e.Time = time.Unix(0, 0) }), ErrMalformed},
		{"vote grade", Record{Vote: &Vote{Network: "n", Grade: 101, Time: t0}}, ErrMalformed},
		{"vote and vouch", Record{Vote: sampleVote(), Vouch: sampleVouch(t)}, ErrMalformed},
		{"vouch key", Record{Vouch: &Vouch{Network: "n", Key: "nodeB+1234+notakey", Time: t0}}, ErrMalformed},
		{"vouch key too long", Record{Vouch: &Vouch{Network: "n", Key: strings.Repeat("k", MaxKeyLen+1), Time: t0}}, ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Sign(s, tt.r); !errors.Is(err, tt.want) {
				t.Errorf("Sign: %v; want %v", err, tt.want)
			}
		})
	}
}

// encoded returns a signed sample record's bytes.
func encoded(t testing.TB, s note.Signer, r Record) []byte {
	t.Helper()
	signed, err := Sign(s, r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(signed)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRejects(t *testing.T) {
	s, v := testKey(t, "nodeA")
	_, other := testKey(t, "nodeA") // same name, another key
	good := encoded(t, s, Record{Experience: sampleExperience()})
	edit := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	// Offset of the confidence field in good.
	conf := 2 + 2 + len("hanzo") + 2 + len("code.go") + 2 + len(sampleExperience().Text)
	for _, tt := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"version", edit(func(b []byte) []byte { b[0] = 2; return b }), ErrVersion},
		{"kind", edit(func(b []byte) []byte { b[1] = 9; return b }), ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(append([]byte(nil), good...), 0), ErrMalformed},
		{"oversized", make([]byte, MaxRecordLen+1), ErrTooLarge},
		{"length over bound", edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[2:], MaxNetworkLen+1); return b }), ErrTooLarge},
		{"negative zero", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[conf:], math.Float64bits(math.Copysign(0, -1)))
			return b
		}), ErrNonCanonical},
		{"tampered text", edit(func(b []byte) []byte { b[20] ^= 1; return b }), ErrBadSignature},
		{"tampered signature", edit(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrBadSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(tt.b, note.VerifierList(v)); !errors.Is(err, tt.want) {
				t.Errorf("Open: %v; want %v", err, tt.want)
			}
		})
	}
	if _, err := Open(good, note.VerifierList(other)); !errors.Is(err, ErrUnknownAuthor) {
		t.Errorf("Open with another key of the same name: %v; want ErrUnknownAuthor", err)
	}
	r, err := Decode(good)
	if err != nil {
		t.Fatal(err)
	}
	// A verifier of the same name and hash but another key (a collision
	// forged on purpose) still fails the signature.
	if err := r.Verify(fakeVerifier{v.Name(), v.KeyHash(), other}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify with a colliding key: %v; want ErrBadSignature", err)
	}
}

type fakeVerifier struct {
	name string
	hash uint32
	note.Verifier
}

func (f fakeVerifier) Name() string    { return f.name }
func (f fakeVerifier) KeyHash() uint32 { return f.hash }

func FuzzDecodeRecord(f *testing.F) {
	s, v := testKey(f, "nodeA")
	f.Add(encoded(f, s, Record{Experience: sampleExperience()}))
	f.Add(encoded(f, s, Record{Vote: sampleVote()}))
	f.Add(encoded(f, s, Record{Vouch: sampleVouch(f)}))
	f.Add(encoded(f, s, Record{Experience: &Experience{Network: "n", Domain: "d", Text: "t", Time: t0}}))
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(r)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", r, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x; decoded from %x", again, b)
		}
		r2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("second decode %+v, %v; want %+v", r2, err, r)
		}
		// Anything signed by the fuzzer is not signed by v, unless it is a
		// seed left untouched.
		_ = r.Verify(v)
		// Signing what was decoded round-trips through Open.
		if rs, err := Sign(s, r); err == nil {
			if _, err := Open(mustEncode(t, rs), note.VerifierList(v)); err != nil {
				t.Fatalf("re-signed record does not open: %v", err)
			}
		}
	})
}

func mustEncode(t *testing.T, r Record) []byte {
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
