package network

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Record wire format, version 1. Integers are big-endian; a string or byte
// field is a uint16 length then that many bytes. There is one encoding of
// each record: Decode rejects anything Encode would not have written.
//
//	version   1 byte (1)
//	kind      1 byte (KindExperience, KindVote or KindVouch)
//	body      the kind's fields, in the order of the struct
//	author    string: the key name of the signer
//	key hash  4 bytes: the note key hash of the signer
//	signature 64 bytes: Ed25519 over signedPrefix || everything above
const recordVersion = 1

// Bounds on every field, so that a record always fits one C2SP entry
// (uint16 length) with room to spare.
const (
	MaxNetworkLen = 64
	MaxDomainLen  = 128
	MaxTextLen    = 8 << 10
	MaxSpaceLen   = 128
	MaxCodeLen    = 4 << 10 // a BitDelta code is 484 bytes
	MaxAuthorLen  = 128
	MaxKeyLen     = 256 // a note verifier key: name+hash+base64 key
	sigLen        = ed25519SignatureSize
	// MaxRecordLen is the largest encoded record.
	MaxRecordLen = 2 + 2 + MaxNetworkLen + 2 + MaxDomainLen + 2 + MaxTextLen + 8 + 2 + MaxSpaceLen +
		2 + MaxCodeLen + 8 + 2 + MaxAuthorLen + 4 + sigLen
)

const ed25519SignatureSize = 64

// Times are milliseconds since 1970 within [minTime, maxTime]: a record
// from before 2020 or after 2200 is a mistake or an attack.
var (
	minTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// signedPrefix separates record signatures from every other use of a node
// key: a checkpoint note is UTF-8 text, which never starts with this NUL.
const signedPrefix = "\x00dso network record v1\n"

// Kind says what a record holds.
type Kind uint8

const (
	KindExperience Kind = 1
	KindVote       Kind = 2
	KindVouch      Kind = 3
)

// Errors Decode and Verify return, wrapped with details.
var (
	ErrMalformed     = errors.New("network: malformed record")
	ErrVersion       = errors.New("network: unknown record version")
	ErrTooLarge      = errors.New("network: record field too large")
	ErrNonCanonical  = errors.New("network: non-canonical record")
	ErrBadSignature  = errors.New("network: bad record signature")
	ErrUnknownAuthor = errors.New("network: unknown record author")
)

// Experience is a shared lesson.
type Experience struct {
	Network    string    // network id: lower-case letters, digits, '.', '_', '-'
	Domain     string    // e.g. "code.go"; printable UTF-8
	Text       string    // the lesson; UTF-8
	Confidence float64   // in [0, 1]
	Space      string    // embedding space of Code, e.g. "hash:2048"; empty with no code
	Code       []byte    // BitDelta code in Space; may be empty
	Time       time.Time // when the author made it; kept to the millisecond
}

// Vote grades an experience, named by ExperienceID.
type Vote struct {
	Network    string
	Experience [32]byte // ExperienceID of the experience voted on
	Grade      int8     // in [-100, 100]: Up and Down, or a graded score
	Time       time.Time
}

// Up and Down are the grades of a plain vote.
const (
	Up   int8 = 100
	Down int8 = -100
)

// Vouch says that its author follows and trusts the node whose verifier
// key is Key on Network, or, Revoked, no longer does. The latest vouch of
// an author for a key counts. Trust passes along vouches, bounded (see
// Trust), so that a node learns the nodes its peers follow.
type Vouch struct {
	Network string
	Key     string // note verifier key: name+hash+key
	Revoked bool
	Time    time.Time
}

// Record is one signed entry of a log: exactly one of Experience, Vote
// and Vouch is set.
type Record struct {
	Experience *Experience
	Vote       *Vote
	Vouch      *Vouch
	// Author and KeyHash name the signer's note key.
	Author  string
	KeyHash uint32
	Sig     []byte
}

// Kind is the kind of r, 0 when it holds neither or both.
func (r Record) Kind() Kind {
	switch {
	case r.Experience != nil && r.Vote == nil && r.Vouch == nil:
		return KindExperience
	case r.Vote != nil && r.Experience == nil && r.Vouch == nil:
		return KindVote
	case r.Vouch != nil && r.Experience == nil && r.Vote == nil:
		return KindVouch
	}
	return 0
}

// Network is the network the record belongs to.
func (r Record) Network() string {
	switch r.Kind() {
	case KindExperience:
		return r.Experience.Network
	case KindVote:
		return r.Vote.Network
	case KindVouch:
		return r.Vouch.Network
	}
	return ""
}

// ExperienceID names an experience across a network: the same network,
// domain and text are the same experience, whoever publishes it.
func ExperienceID(network, domain, text string) [32]byte {
	h := sha256.New()
	h.Write([]byte("dso experience id v1\x00"))
	var b []byte
	for _, s := range []string{network, domain, text} {
		b = binary.BigEndian.AppendUint32(b[:0], uint32(len(s)))
		h.Write(b)
		h.Write([]byte(s))
	}
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// Sign signs the record's body with s and returns it complete.
func Sign(s note.Signer, r Record) (Record, error) {
	r = normalized(r)
	r.Author, r.KeyHash, r.Sig = s.Name(), s.KeyHash(), nil
	body, err := appendBody(nil, r)
	if err != nil {
		return Record{}, err
	}
	sig, err := s.Sign(append([]byte(signedPrefix), body...))
	if err != nil {
		return Record{}, fmt.Errorf("network: sign record: %w", err)
	}
	if len(sig) != sigLen {
		return Record{}, fmt.Errorf("network: sign record: %d-byte signature; want an Ed25519 key", len(sig))
	}
	r.Sig = sig
	return r, nil
}

// normalized copies r's payload with its time as the wire keeps it, so
// that a signed record equals what decoding it returns.
func normalized(r Record) Record {
	ms := func(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
	if r.Experience != nil {
		e := *r.Experience
		e.Time = ms(e.Time)
		r.Experience = &e
	}
	if r.Vote != nil {
		v := *r.Vote
		v.Time = ms(v.Time)
		r.Vote = &v
	}
	if r.Vouch != nil {
		v := *r.Vouch
		v.Time = ms(v.Time)
		r.Vouch = &v
	}
	return r
}

// Encode returns the canonical bytes of a signed record.
func Encode(r Record) ([]byte, error) {
	if len(r.Sig) != sigLen {
		return nil, fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(r.Sig))
	}
	b, err := appendBody(make([]byte, 0, 256), r)
	if err != nil {
		return nil, err
	}
	return append(b, r.Sig...), nil
}

// appendBody appends everything but the signature, checking every bound.
func appendBody(b []byte, r Record) ([]byte, error) {
	b = append(b, recordVersion, byte(r.Kind()))
	var err error
	switch r.Kind() {
	case KindExperience:
		b, err = appendExperience(b, r.Experience)
	case KindVote:
		b, err = appendVote(b, r.Vote)
	case KindVouch:
		b, err = appendVouch(b, r.Vouch)
	default:
		return nil, fmt.Errorf("%w: want exactly one of experience, vote and vouch", ErrMalformed)
	}
	if err != nil {
		return nil, err
	}
	if !validName(r.Author) {
		return nil, fmt.Errorf("%w: author %q is not a note key name", ErrMalformed, r.Author)
	}
	if b, err = appendString(b, "author", r.Author, MaxAuthorLen); err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint32(b, r.KeyHash), nil
}

func appendExperience(b []byte, e *Experience) ([]byte, error) {
	if err := checkExperience(e); err != nil {
		return nil, err
	}
	var err error
	for _, f := range []struct {
		name, s string
		max     int
	}{{"network", e.Network, MaxNetworkLen}, {"domain", e.Domain, MaxDomainLen}, {"text", e.Text, MaxTextLen}} {
		if b, err = appendString(b, f.name, f.s, f.max); err != nil {
			return nil, err
		}
	}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(e.Confidence))
	if b, err = appendString(b, "space", e.Space, MaxSpaceLen); err != nil {
		return nil, err
	}
	if b, err = appendString(b, "code", string(e.Code), MaxCodeLen); err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli())), nil
}

func appendVote(b []byte, v *Vote) ([]byte, error) {
	if err := checkVote(v); err != nil {
		return nil, err
	}
	b, err := appendString(b, "network", v.Network, MaxNetworkLen)
	if err != nil {
		return nil, err
	}
	b = append(b, v.Experience[:]...)
	b = append(b, byte(v.Grade))
	return binary.BigEndian.AppendUint64(b, uint64(v.Time.UnixMilli())), nil
}

func appendVouch(b []byte, v *Vouch) ([]byte, error) {
	if err := checkVouch(v); err != nil {
		return nil, err
	}
	b, err := appendString(b, "network", v.Network, MaxNetworkLen)
	if err != nil {
		return nil, err
	}
	if b, err = appendString(b, "key", v.Key, MaxKeyLen); err != nil {
		return nil, err
	}
	revoked := byte(0)
	if v.Revoked {
		revoked = 1
	}
	b = append(b, revoked)
	return binary.BigEndian.AppendUint64(b, uint64(v.Time.UnixMilli())), nil
}

func appendString(b []byte, field, s string, max int) ([]byte, error) {
	if len(s) > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, over %d", ErrTooLarge, field, len(s), max)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

func checkExperience(e *Experience) error {
	switch {
	case !ValidNetworkID(e.Network):
		return fmt.Errorf("%w: network id %q", ErrMalformed, e.Network)
	case e.Domain == "" || !printable(e.Domain):
		return fmt.Errorf("%w: domain must be non-empty printable UTF-8", ErrMalformed)
	case e.Text == "" || !utf8.ValidString(e.Text):
		return fmt.Errorf("%w: text must be non-empty UTF-8", ErrMalformed)
	case math.IsNaN(e.Confidence) || e.Confidence < 0 || e.Confidence > 1:
		return fmt.Errorf("%w: confidence must be in [0, 1]", ErrMalformed)
	case e.Confidence == 0 && math.Signbit(e.Confidence):
		return fmt.Errorf("%w: confidence -0", ErrNonCanonical)
	case !printable(e.Space):
		return fmt.Errorf("%w: space must be printable UTF-8", ErrMalformed)
	case (e.Space == "") != (len(e.Code) == 0):
		return fmt.Errorf("%w: a code needs its space, and a space its code", ErrMalformed)
	}
	return checkTime(e.Time)
}

func checkVote(v *Vote) error {
	switch {
	case !ValidNetworkID(v.Network):
		return fmt.Errorf("%w: network id %q", ErrMalformed, v.Network)
	case v.Grade < -100 || v.Grade > 100:
		return fmt.Errorf("%w: grade %d is outside [-100, 100]", ErrMalformed, v.Grade)
	}
	return checkTime(v.Time)
}

func checkVouch(v *Vouch) error {
	if !ValidNetworkID(v.Network) {
		return fmt.Errorf("%w: network id %q", ErrMalformed, v.Network)
	}
	if len(v.Key) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes, over %d", ErrTooLarge, len(v.Key), MaxKeyLen)
	}
	if _, err := note.NewVerifier(v.Key); err != nil {
		return fmt.Errorf("%w: key: %v", ErrMalformed, err)
	}
	return checkTime(v.Time)
}

func checkTime(t time.Time) error {
	if t.Before(minTime) || !t.Before(maxTime) {
		return fmt.Errorf("%w: time %s is outside [%d, %d)", ErrMalformed, t.UTC().Format(time.RFC3339), minTime.Year(), maxTime.Year())
	}
	return nil
}

// ValidNetworkID reports whether id can name a network: 1 to MaxNetworkLen
// lower-case letters, digits, '.', '_' or '-', starting with a letter or
// digit. It appears in URLs and file names, so nothing else is allowed.
func ValidNetworkID(id string) bool {
	if id == "" || len(id) > MaxNetworkLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// printable reports whether s is UTF-8 with no control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// validName is note's rule for key names: non-empty, no spaces or '+'.
func validName(name string) bool {
	if name == "" || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '+' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
