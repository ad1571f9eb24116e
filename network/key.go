package network

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// maxKeyFile bounds what LoadSigner reads: a note private key is under 200
// bytes, so anything much larger is not a key file.
const maxKeyFile = 4 << 10

// ErrKeyFile reports a key file that does not hold one note private key.
var ErrKeyFile = errors.New("network: not a key file")

// Identity is a node's signing key and the verifier key that names it.
type Identity struct {
	Signer note.Signer
	// VerifierKey is the "name+hash+key" string other nodes configure to
	// accept this node's checkpoints and records.
	VerifierKey string
	// Cosigner signs the node's cosignatures as a witness (C2SP
	// tlog-cosignature, Ed25519 cosignature/v1), with the same Ed25519
	// key and name as Signer: what it signs begins "cosignature/v1\ntime",
	// which no checkpoint (whose second line is its size) and no record
	// (which begins with a NUL) does, so none passes for another. Nil in
	// an Identity made by hand.
	Cosigner note.Signer
	// WitnessKey is the verifier key of the cosignatures: VerifierKey's
	// key as a cosignature key (type 0x04), so with another key hash.
	// Logs and followers may name a dso witness by either.
	WitnessKey string
}

// GenerateKey writes a new Ed25519 key named name to file, readable by its
// owner only, and returns the identity. It refuses to overwrite an existing
// file: losing a node's key loses the node's name.
func GenerateKey(file, name string) (Identity, error) {
	return generateKey(rand.Reader, file, name)
}

func generateKey(r io.Reader, file, name string) (Identity, error) {
	skey, vkey, err := note.GenerateKey(r, name)
	if err != nil {
		return Identity{}, fmt.Errorf("network: generate key %q: %w", name, err)
	}
	// note.GenerateKey accepts names its own NewSigner rejects ("a+b"):
	// check before anything is written.
	s, err := note.NewSigner(skey)
	if err != nil {
		return Identity{}, fmt.Errorf("network: key name %q: %w", name, err)
	}
	id, err := withCosigner(Identity{Signer: s, VerifierKey: vkey}, skey)
	if err != nil {
		return Identity{}, fmt.Errorf("network: key name %q: %w", name, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Identity{}, fmt.Errorf("network: write key: %w", err)
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		os.Remove(file)
		return Identity{}, fmt.Errorf("network: write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(file)
		return Identity{}, fmt.Errorf("network: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return Identity{}, fmt.Errorf("network: write key: %w", err)
	}
	return id, nil
}

// LoadKey reads a key file written by GenerateKey.
func LoadKey(file string) (Identity, error) {
	f, err := os.Open(file)
	if err != nil {
		return Identity{}, fmt.Errorf("network: load key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return Identity{}, fmt.Errorf("network: load key: %w", err)
	}
	if len(data) > maxKeyFile {
		return Identity{}, fmt.Errorf("%w: %s is over %d bytes", ErrKeyFile, file, maxKeyFile)
	}
	return ParseKey(data)
}

// ParseKey parses the contents of a key file: one note private key
// ("PRIVATE+KEY+name+hash+key"), optionally followed by a newline.
func ParseKey(data []byte) (Identity, error) {
	skey := string(bytes.TrimSuffix(data, []byte("\n")))
	if strings.ContainsAny(skey, "\r\n\t ") {
		return Identity{}, ErrKeyFile
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		// note's errors name no secret, but say only what is wrong.
		return Identity{}, ErrKeyFile
	}
	vkey, err := verifierKey(s, skey)
	if err != nil {
		return Identity{}, err
	}
	return withCosigner(Identity{Signer: s, VerifierKey: vkey}, skey)
}

// withCosigner adds to id the cosignature/v1 signer of its key skey, and
// its verifier key.
func withCosigner(id Identity, skey string) (Identity, error) {
	cs, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return Identity{}, ErrKeyFile
	}
	wkey, err := fnote.VKeyToCosignatureV1(id.VerifierKey)
	if err != nil {
		return Identity{}, ErrKeyFile
	}
	id.Cosigner, id.WitnessKey = cs, wkey
	return id, nil
}

// verifierKey derives "name+hash+key" from a note private key, whose form
// is "PRIVATE+KEY+name+hash+base64(alg||seed)" with alg 1 for Ed25519.
func verifierKey(s note.Signer, skey string) (string, error) {
	// The key itself is base64, which may hold '+' too.
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", ErrKeyFile
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", ErrKeyFile
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return "", ErrKeyFile
	}
	return vkey, nil
}
