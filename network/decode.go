package network

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Decode parses a record written by Encode. It checks structure, bounds
// and canonical form, not the signature: see Verify and Open.
func Decode(b []byte) (Record, error) {
	if len(b) > MaxRecordLen {
		return Record{}, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, len(b), MaxRecordLen)
	}
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != recordVersion {
		return Record{}, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	var r Record
	switch k := Kind(d.byte()); k {
	case KindExperience:
		r.Experience = d.experience()
	case KindVote:
		r.Vote = d.vote()
	case KindVouch:
		r.Vouch = d.vouch()
	default:
		if d.err == nil {
			return Record{}, fmt.Errorf("%w: kind %d", ErrMalformed, k)
		}
	}
	r.Author = d.string("author", MaxAuthorLen)
	r.KeyHash = d.uint32()
	r.Sig = d.bytes(sigLen)
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) > 0 {
		return Record{}, fmt.Errorf("%w: %d bytes after the signature", ErrMalformed, len(d.b))
	}
	r.Sig = append([]byte(nil), r.Sig...)
	// Encoding again checks every value rule in one place; a record that
	// decodes but would not encode to the same bytes is not canonical.
	again, err := Encode(r)
	if err != nil {
		return Record{}, err
	}
	if string(again) != string(b) {
		return Record{}, ErrNonCanonical
	}
	return r, nil
}

// Verify checks r's signature with v, which must be the key r names.
func (r Record) Verify(v note.Verifier) error {
	if v.Name() != r.Author || v.KeyHash() != r.KeyHash {
		return fmt.Errorf("%w: signed by %s+%08x, not %s+%08x", ErrUnknownAuthor, r.Author, r.KeyHash, v.Name(), v.KeyHash())
	}
	body, err := appendBody([]byte(signedPrefix), r)
	if err != nil {
		return err
	}
	if !v.Verify(body, r.Sig) {
		return ErrBadSignature
	}
	return nil
}

// Open decodes a record and verifies its signature with the author's key
// among known.
func Open(b []byte, known note.Verifiers) (Record, error) {
	r, err := Decode(b)
	if err != nil {
		return Record{}, err
	}
	v, err := known.Verifier(r.Author, r.KeyHash)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %s+%08x", ErrUnknownAuthor, r.Author, r.KeyHash)
	}
	if err := r.Verify(v); err != nil {
		return Record{}, err
	}
	return r, nil
}

// decoder reads fields off b; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	if v := d.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) uint64() uint64 {
	if v := d.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) string(field string, max int) string {
	v := d.bytes(2)
	if v == nil {
		return ""
	}
	n := int(binary.BigEndian.Uint16(v))
	if n > max {
		d.err = fmt.Errorf("%w: %s is %d bytes, over %d", ErrTooLarge, field, n, max)
		return ""
	}
	return string(d.bytes(n))
}

func (d *decoder) time() time.Time {
	ms := d.uint64()
	if ms > math.MaxInt64 {
		if d.err == nil {
			d.err = fmt.Errorf("%w: time", ErrMalformed)
		}
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}

func (d *decoder) experience() *Experience {
	e := &Experience{
		Network: d.string("network", MaxNetworkLen),
		Domain:  d.string("domain", MaxDomainLen),
		Text:    d.string("text", MaxTextLen),
	}
	e.Confidence = math.Float64frombits(d.uint64())
	e.Space = d.string("space", MaxSpaceLen)
	if code := d.string("code", MaxCodeLen); code != "" {
		e.Code = []byte(code)
	}
	e.Time = d.time()
	return e
}

func (d *decoder) vote() *Vote {
	v := &Vote{Network: d.string("network", MaxNetworkLen)}
	copy(v.Experience[:], d.bytes(32))
	v.Grade = int8(d.byte())
	v.Time = d.time()
	return v
}

func (d *decoder) vouch() *Vouch {
	v := &Vouch{Network: d.string("network", MaxNetworkLen), Key: d.string("key", MaxKeyLen)}
	switch b := d.byte(); {
	case d.err != nil:
	case b == 1:
		v.Revoked = true
	case b != 0:
		d.err = fmt.Errorf("%w: revoked is %d", ErrMalformed, b)
	}
	v.Time = d.time()
	return v
}
