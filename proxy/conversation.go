package proxy

import (
	"crypto/sha256"

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
	text string   // as appended to the turn's content
	ids  []string // the experiences it holds
}

// turnMemory remembers placedNotes by turn hash.
type turnMemory struct {
	turns *lru.Cache[[32]byte, placedNotes]
}

func newTurnMemory(n int) *turnMemory {
	c, _ := lru.New[[32]byte, placedNotes](n) // n > 0: no error
	return &turnMemory{turns: c}
}

// conversation is what the memory knows of a request's messages.
type conversation struct {
	earlier  map[int]string  // message index → notes to put back
	held     map[string]bool // experiences the conversation already holds
	lastUser int             // index of the newest user message, -1 if none
	lastKey  [32]byte        // its turn hash
}

// recall reads body's messages (already validated): the hash of each
// prefix ending at a user message, the notes remembered for the earlier
// ones, whose experiences active says are still to be shown (a note
// retired or deleted since is not put back).
func (m *turnMemory) recall(body []byte, active func(id string) bool) conversation {
	c := conversation{lastUser: -1}
	h := sha256.New()
	var sum [32]byte
	type turn struct {
		i   int
		key [32]byte
	}
	var users []turn
	i := 0
	lastField(readJSON(body), "messages").ForEach(func(_, msg gjson.Result) bool {
		h.Write([]byte(msg.Raw))
		h.Write([]byte{0})
		if lastField(msg, "role").Str == "user" {
			h.Sum(sum[:0])
			users = append(users, turn{i, sum})
		}
		i++
		return true
	})
	if len(users) == 0 {
		return c
	}
	last := users[len(users)-1]
	c.lastUser, c.lastKey = last.i, last.key
	for _, u := range users[:len(users)-1] {
		p, ok := m.turns.Get(u.key)
		if !ok || !allActive(p.ids, active) {
			continue
		}
		if c.earlier == nil {
			c.earlier, c.held = map[int]string{}, map[string]bool{}
		}
		c.earlier[u.i] = p.text
		for _, id := range p.ids {
			c.held[id] = true
		}
	}
	return c
}

func allActive(ids []string, active func(string) bool) bool {
	for _, id := range ids {
		if !active(id) {
			return false
		}
	}
	return true
}

// remember keeps the notes added to the conversation's newest user turn.
func (m *turnMemory) remember(c conversation, text string, ids []string) {
	if c.lastUser < 0 || text == "" {
		return
	}
	m.turns.Add(c.lastKey, placedNotes{text: text, ids: ids})
}
