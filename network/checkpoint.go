package network

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxCheckpoint bounds a checkpoint note, signatures included: the body is
// three short lines, and a log has one or a few signatures.
const maxCheckpoint = 16 << 10

// Errors about checkpoints, wrapped with details.
var (
	ErrCheckpoint          = errors.New("network: malformed checkpoint")
	ErrCheckpointSignature = errors.New("network: checkpoint not signed by the log's key")
	ErrOrigin              = errors.New("network: checkpoint of another log")
)

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, its
// size and its RFC 6962 root hash, and any extension lines.
type Checkpoint struct {
	Origin     string
	Size       int64
	Hash       tlog.Hash
	Extensions []string
}

// Tree returns the checkpoint as the tree tlog proves against.
func (c Checkpoint) Tree() tlog.Tree { return tlog.Tree{N: c.Size, Hash: c.Hash} }

// Format returns the note text of c, which ends in a newline.
func (c Checkpoint) Format() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
	for _, e := range c.Extensions {
		b.WriteString(e + "\n")
	}
	return b.Bytes()
}

// ParseCheckpoint parses the note text of a checkpoint (signatures
// removed). There is one text for each checkpoint: no leading zeros, no
// spare lines, base64 with padding.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > maxCheckpoint || !utf8.Valid(text) {
		return Checkpoint{}, fmt.Errorf("%w: too large or not UTF-8", ErrCheckpoint)
	}
	s, ok := strings.CutSuffix(string(text), "\n")
	if !ok {
		return Checkpoint{}, fmt.Errorf("%w: no final newline", ErrCheckpoint)
	}
	lines := strings.Split(s, "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: %d lines; want at least 3", ErrCheckpoint, len(lines))
	}
	c := Checkpoint{Origin: lines[0]}
	if c.Origin == "" || !printable(c.Origin) {
		return Checkpoint{}, fmt.Errorf("%w: origin", ErrCheckpoint)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrCheckpoint, lines[1])
	}
	c.Size = n
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: root hash", ErrCheckpoint)
	}
	copy(c.Hash[:], h)
	for _, e := range lines[3:] {
		if e == "" || !printable(e) {
			return Checkpoint{}, fmt.Errorf("%w: empty or unprintable extension line", ErrCheckpoint)
		}
		c.Extensions = append(c.Extensions, e)
	}
	return c, nil
}

// SignCheckpoint returns c as a signed note.
func SignCheckpoint(s note.Signer, c Checkpoint) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(c.Format())}, s)
	if err != nil {
		return nil, fmt.Errorf("network: sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint with the log's key v and
// parses it. origin, when not empty, is the origin the checkpoint must
// name.
func OpenCheckpoint(msg []byte, v note.Verifier, origin string) (Checkpoint, error) {
	if len(msg) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes", ErrCheckpoint, len(msg))
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpointSignature, err)
		}
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if origin != "" && c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: origin %q; want %q", ErrOrigin, c.Origin, origin)
	}
	return c, nil
}

// Origin is the checkpoint origin of a node's log on a network: the node's
// key name, then the network id.
func Origin(keyName, networkID string) string { return keyName + "/" + networkID }
