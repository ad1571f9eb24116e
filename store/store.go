package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors callers branch on. Errors returned by this package wrap them, so
// test with errors.Is.
var (
	// ErrNotFound reports that no record has the requested id.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid reports a record that fails validation; nothing was written.
	ErrInvalid = errors.New("store: invalid record")
	// ErrSchemaTooNew reports a database file written by a newer schema
	// than this binary knows.
	ErrSchemaTooNew = errors.New("store: schema newer than this binary")
	// ErrClosed reports use of a store after Close.
	ErrClosed = errors.New("store: closed")
)

// Limits on what a record may hold.
const (
	// CodeSize is the length of an experience's BitDelta code: 3840 sign
	// bits packed into 480 bytes plus a float32 scale.
	CodeSize = 484
	// MaxTextBytes bounds an experience's normalised text. Experiences are
	// short lessons; anything longer is a bug or an abuse.
	MaxTextBytes = 16 << 10
	// MaxDomainBytes bounds an experience's domain.
	MaxDomainBytes = 256
	// MaxFieldBytes bounds short identifiers: model, node, trace and voter ids.
	MaxFieldBytes = 512
)

// Status is an experience's lifecycle state.
type Status string

// Experience states. Retired experiences stay stored (votes and provenance
// remain) but are not meant to be injected.
const (
	StatusActive  Status = "active"
	StatusRetired Status = "retired"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return s == StatusActive || s == StatusRetired }

// Experience is a short, human-readable lesson distilled from a graded
// answer.
type Experience struct {
	// ID is ExperienceID(Domain, Text). PutExperience computes it; a
	// non-empty ID that differs is rejected.
	ID string
	// Text is the lesson, normalised by NormalizeText on write.
	Text string
	// Key is the question the lesson was learned from, if any, normalised
	// like Text: the library embeds it together with Text, so the lesson
	// is found by questions like the one it came from as well as by its own
	// words. It is not part of the id.
	Key string
	// Domain is a short topic label such as "code/go", normalised by
	// NormalizeDomain on write. It may be empty.
	Domain string
	// Confidence is in [0, 1].
	Confidence float64
	// Prior is the confidence the experience was created with, in [0, 1]:
	// votes smooth its confidence toward this, not toward the current one,
	// so repeated rescoring does not compound. Zero on write means
	// Confidence; updates never change it.
	Prior float64
	// Status is active or retired; empty means active on write.
	Status Status
	// SourceModel is the model whose answer this was distilled from.
	SourceModel string
	// SourceNode is the node that created the experience.
	SourceNode string
	// TraceID is the trace it came from, if any.
	TraceID string
	// Code is the 484-byte BitDelta code, or empty when not yet embedded.
	Code []byte
	// Space names the embedding space Code was made in (see
	// library.Space); it is required with a code. Codes from different
	// spaces are never compared.
	Space string
	// CreatedAt and UpdatedAt are set by the store from its clock.
	CreatedAt, UpdatedAt time.Time
}

// Trace records one proxied request for later feedback.
type Trace struct {
	ID     string // required, chosen by the caller (the proxy's trace id)
	Query  string
	Domain string
	// ExperienceIDs lists the experiences injected into the prompt, in order.
	ExperienceIDs []string
	Model         string
	Answer        string
	// CreatedAt is set from the store's clock when zero.
	CreatedAt time.Time
}

// Vote is one voter's grade of one experience as used in one trace. There is
// at most one vote per (experience, trace, voter): putting it again (a
// regrade) replaces the earlier one.
type Vote struct {
	ExperienceID string
	Voter        string
	TraceID      string // may be empty for a vote given outside a trace
	Up           bool
	// At is set from the store's clock when zero.
	At time.Time
}

// Tally counts an experience's votes, one per voter: a voter's latest vote
// counts, whichever trace it came through.
type Tally struct {
	Up, Down int
}

// NormalizeText returns text in the form that is stored and hashed: line
// endings are \n, runs of spaces and tabs are one space, lines carry no
// leading or trailing blanks, there is at most one blank line in a row, and
// the whole is trimmed. Invalid UTF-8 is replaced by U+FFFD.
func NormalizeText(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	var b strings.Builder
	b.Grow(len(text))
	blank := 0
	for _, line := range lines {
		line = strings.Join(strings.FieldsFunc(line, isBlank), " ")
		if line == "" {
			blank++
			continue
		}
		if b.Len() > 0 {
			if blank > 0 {
				b.WriteString("\n\n")
			} else {
				b.WriteByte('\n')
			}
		}
		blank = 0
		b.WriteString(line)
	}
	return b.String()
}

func isBlank(r rune) bool { return r != '\n' && unicode.IsSpace(r) }

// NormalizeDomain returns domain trimmed and lower-cased.
func NormalizeDomain(domain string) string {
	return strings.ToLower(strings.TrimSpace(strings.ToValidUTF8(domain, "\uFFFD")))
}

// idPrefix separates experience hashes from any other SHA-256 use.
const idPrefix = "dso/experience/v1\x00"

// ExperienceID returns the content id of an experience: the lowercase hex
// SHA-256 of
//
//	"dso/experience/v1\x00" || u64be(len(d)) || d || u64be(len(t)) || t
//
// where d = NormalizeDomain(domain) and t = NormalizeText(text). The length
// prefixes make the encoding unambiguous.
func ExperienceID(domain, text string) string {
	d, t := NormalizeDomain(domain), NormalizeText(text)
	h := sha256.New()
	var n [8]byte
	h.Write([]byte(idPrefix))
	binary.BigEndian.PutUint64(n[:], uint64(len(d)))
	h.Write(n[:])
	h.Write([]byte(d))
	binary.BigEndian.PutUint64(n[:], uint64(len(t)))
	h.Write(n[:])
	h.Write([]byte(t))
	return hex.EncodeToString(h.Sum(nil))
}

// prepare normalises e, fills its ID and default status, and validates it.
func (e Experience) prepare() (Experience, error) {
	e.Domain = NormalizeDomain(e.Domain)
	e.Text = NormalizeText(e.Text)
	e.Key = NormalizeText(e.Key)
	if e.Status == "" {
		e.Status = StatusActive
	}
	id := ExperienceID(e.Domain, e.Text)
	switch {
	case e.Text == "":
		return e, fmt.Errorf("%w: empty text", ErrInvalid)
	case len(e.Text) > MaxTextBytes:
		return e, fmt.Errorf("%w: text is %d bytes, max %d", ErrInvalid, len(e.Text), MaxTextBytes)
	case len(e.Key) > MaxTextBytes:
		return e, fmt.Errorf("%w: key is %d bytes, max %d", ErrInvalid, len(e.Key), MaxTextBytes)
	case len(e.Domain) > MaxDomainBytes:
		return e, fmt.Errorf("%w: domain is %d bytes, max %d", ErrInvalid, len(e.Domain), MaxDomainBytes)
	case e.ID != "" && e.ID != id:
		return e, fmt.Errorf("%w: id %.16s… is not the content hash of domain and text", ErrInvalid, e.ID)
	}
	if err := checkConfidence(e.Confidence); err != nil {
		return e, err
	}
	if e.Prior == 0 {
		e.Prior = e.Confidence
	}
	if err := checkConfidence(e.Prior); err != nil {
		return e, err
	}
	if err := checkStatus(e.Status); err != nil {
		return e, err
	}
	if err := checkCode(e.Code, e.Space); err != nil {
		return e, err
	}
	for _, f := range []struct{ name, v string }{
		{"source model", e.SourceModel}, {"source node", e.SourceNode}, {"trace id", e.TraceID}, {"space", e.Space},
	} {
		if err := checkField(f.name, f.v, false); err != nil {
			return e, err
		}
	}
	e.ID = id
	return e, nil
}

func checkConfidence(c float64) error {
	if math.IsNaN(c) || c < 0 || c > 1 {
		return fmt.Errorf("%w: confidence %v out of [0,1]", ErrInvalid, c)
	}
	return nil
}

func checkStatus(s Status) error {
	if !s.Valid() {
		return fmt.Errorf("%w: status %q is not %q or %q", ErrInvalid, s, StatusActive, StatusRetired)
	}
	return nil
}

func checkCode(code []byte, space string) error {
	if len(code) != 0 && len(code) != CodeSize {
		return fmt.Errorf("%w: code is %d bytes, want %d or none", ErrInvalid, len(code), CodeSize)
	}
	if len(code) != 0 && space == "" {
		return fmt.Errorf("%w: a code without its embedding space", ErrInvalid)
	}
	return nil
}

func checkField(name, v string, required bool) error {
	switch {
	case required && v == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, name)
	case len(v) > MaxFieldBytes:
		return fmt.Errorf("%w: %s is %d bytes, max %d", ErrInvalid, name, len(v), MaxFieldBytes)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, name)
	}
	return nil
}
