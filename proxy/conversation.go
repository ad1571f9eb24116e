package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/tidwall/gjson"
)

// Notes that stay put. A client sends its whole conversation each turn,
// without the notes dso added to its earlier turns: placed only with the
// newest user turn, the notes of the turn before vanish, and the
// backend's cached prompt (its KV cache holds the notes and the answer
// computed after them) is reused only up to that turn's user message.
// dso remembers the notes it added to each user turn, keyed by a hash of
// the client's messages up to and including that turn, and puts them back
// where they were when the conversation continues: the forwarded prompt
// then extends the last one exactly, and new notes are added at the
// newest turn, never repeating one the conversation already holds.

// maxRememberedTurns bounds the remembered turns (each holds at most one
// injected message, inject.DefaultMaxTokens).
const maxRememberedTurns = 4096

// placedNotes is what dso added to one user turn.
type placedNotes struct {
	Text string   `json:"text"` // as appended to the turn's content
	IDs  []string `json:"ids"`  // the experiences it holds
}

// sharedTurns is a store that shares the turns' notes between replicas
// (store.Redis): one read for all of a request's earlier turns this
// replica does not hold.
type sharedTurns interface {
	PutTurnNotes(ctx context.Context, key string, value []byte) error
	TurnNotes(ctx context.Context, keys []string) ([][]byte, error)
}

// turnMemory remembers placedNotes by turn hash, in memory and, where
// replicas share a store, there too.
type turnMemory struct {
	turns  *lru.Cache[[32]byte, placedNotes]
	shared sharedTurns // nil: this process only
	fails  *warnEvery  // shared reads and writes that failed
}

func newTurnMemory(n int, shared sharedTurns, fails *warnEvery) *turnMemory {
	c, _ := lru.New[[32]byte, placedNotes](n) // n > 0: no error
	return &turnMemory{turns: c, shared: shared, fails: fails}
}

// conversation is what the memory knows of a request's messages.
type conversation struct {
	earlier  map[int]string  // message index → notes to put back
	held     map[string]bool // experiences the conversation already holds
	lastUser int             // index of the newest user message, -1 if none
	lastKey  [32]byte        // its turn hash
}

// turnKey is a user message's index and the hash of the messages up to
// and including it.
type turnKey struct {
	i   int
	key [32]byte
}

// recall reads body's messages (already validated): the hash of each
// prefix ending at a user message, the notes remembered for the earlier
// ones, whose experiences active says are still to be shown (a note
// retired or deleted since is not put back).
func (m *turnMemory) recall(ctx context.Context, body []byte, active func(id string) bool) conversation {
	c := conversation{lastUser: -1}
	h := sha256.New()
	var sum [32]byte
	var users []turnKey
	i := 0
	lastField(readJSON(body), "messages").ForEach(func(_, msg gjson.Result) bool {
		h.Write([]byte(msg.Raw))
		h.Write([]byte{0})
		if lastField(msg, "role").Str == "user" {
			h.Sum(sum[:0])
			users = append(users, turnKey{i, sum})
		}
		i++
		return true
	})
	if len(users) == 0 {
		return c
	}
	last := users[len(users)-1]
	c.lastUser, c.lastKey = last.i, last.key
	found := make([]placedNotes, len(users)-1)
	var missing []int
	for i, u := range users[:len(users)-1] {
		var ok bool
		if found[i], ok = m.turns.Get(u.key); !ok {
			missing = append(missing, i)
		}
	}
	m.fetch(ctx, users, missing, found)
	for i, u := range users[:len(users)-1] {
		p := found[i]
		if p.Text == "" || !allActive(p.IDs, active) {
			continue
		}
		if c.earlier == nil {
			c.earlier, c.held = map[int]string{}, map[string]bool{}
		}
		c.earlier[u.i] = p.Text
		for _, id := range p.IDs {
			c.held[id] = true
		}
	}
	return c
}

// fetch reads the turns at missing from the shared store into found, and
// keeps them in memory: another replica may have served them.
func (m *turnMemory) fetch(ctx context.Context, users []turnKey, missing []int, found []placedNotes) {
	if m.shared == nil || len(missing) == 0 {
		return
	}
	keys := make([]string, len(missing))
	for j, i := range missing {
		keys[j] = hex.EncodeToString(users[i].key[:])
	}
	vals, err := m.shared.TurnNotes(ctx, keys)
	if err != nil {
		m.fails.add(ctx, 1, err)
		return
	}
	for j, v := range vals {
		var p placedNotes
		if v == nil || json.Unmarshal(v, &p) != nil {
			continue
		}
		found[missing[j]] = p
		m.turns.Add(users[missing[j]].key, p)
	}
}

func allActive(ids []string, active func(string) bool) bool {
	for _, id := range ids {
		if !active(id) {
			return false
		}
	}
	return true
}

// remember keeps the notes added to the conversation's newest user turn,
// in the shared store too: the next turn may reach another replica.
func (m *turnMemory) remember(ctx context.Context, c conversation, text string, ids []string) {
	if c.lastUser < 0 || text == "" {
		return
	}
	p := placedNotes{Text: text, IDs: ids}
	m.turns.Add(c.lastKey, p)
	if m.shared == nil {
		return
	}
	b, _ := json.Marshal(p) // strings only: cannot fail
	if err := m.shared.PutTurnNotes(ctx, hex.EncodeToString(c.lastKey[:]), b); err != nil {
		m.fails.add(ctx, 1, err)
	}
}
