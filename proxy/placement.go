package proxy

import (
	"unsafe"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/inject"
)

// contextRoom is how many tokens notes may take in a context of ctx
// tokens (an Ollama request's options.num_ctx wins): what the request,
// counted whole (its JSON too: an overestimate), and the answer it asks
// room for (max_tokens and its kin) leave. ok is false where the context
// is unknown.
func contextRoom(body []byte, ctx int, c inject.Counter) (int, bool) {
	root := readJSON(body) // validated by the handler
	if n := lastField(lastField(root, "options"), "num_ctx").Int(); n > 0 {
		ctx = int(n)
	}
	if ctx <= 0 {
		return 0, false
	}
	answer := 0
	for _, k := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
		answer = max(answer, int(lastField(root, k).Int()))
	}
	answer = max(answer, int(lastField(lastField(root, "options"), "num_predict").Int()))
	return ctx - c.Count(unsafe.String(unsafe.SliceData(body), len(body))) - answer, true
}

// placeNotes puts the built notes text into body, a request of kind, at
// position. The handler validated body (parseChat, jsonFields): inject
// need not.
func placeNotes(body []byte, text string, kind requestKind, position string) ([]byte, error) {
	switch kind {
	case kindGenerate:
		return inject.PromptAt(body, text, position)
	case kindResponses:
		return inject.ValidResponsesInput(body, text)
	case kindCompletion:
		return inject.ValidCompletionPrompt(body, text)
	case kindMessages:
		// Anthropic's messages have the chat shape; without a user
		// message (or for the system position) the notes go in system.
		if position != config.PositionSystem {
			if out, ok, err := inject.LastUser(body, text); err != nil || ok {
				return out, err
			}
		}
		return inject.ValidSystem(body, text)
	}
	return inject.MessagesAt(body, text, position)
}
