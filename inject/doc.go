// Package inject turns retrieved experiences into one system message for a
// chat request, within a token budget, treating experience text as untrusted
// reference material rather than instructions.
//
// It owns the wording and layout of that message, token counting, the
// sanitising of experience text, and the splice of the message into a raw
// request body. It does not choose which experiences to use (the caller
// passes them ranked, best first) and does not talk to backends or the
// store.
//
// # Building
//
// [Build] renders [Note] values as a fixed [Preamble] followed by a numbered
// list between <reference_notes> markers, each line carrying the note's
// domain and confidence. Every note is passed through [Sanitize]: control
// characters, ANSI escapes, bidi overrides and invisible characters are
// dropped, whitespace (newlines included) collapses to single spaces so a
// note is always exactly one line, and chat-template markers such as
// "<|im_start|>", "</system>", "[INST]" or "### Instruction" are defused.
// Notes are capped in runes and tokens; the whole message never exceeds
// Options.MaxTokens as counted by Options.Counter.
//
// # Counting tokens
//
// [CounterFor] returns an exact BPE counter (o200k_base or cl100k_base,
// from tables embedded in the binary: nothing is downloaded at run time)
// for OpenAI model families and [Heuristic], a vocabulary-free estimate
// that errs high, for every other model.
//
// # Splicing
//
// [Messages] edits only the messages array of an OpenAI or Ollama chat
// body, [Prompt] only the system field of an Ollama generate body and
// [System] only the system field of an Anthropic Messages body; every
// other byte (unknown fields, their order, numbers as written, whitespace)
// is kept. They locate values by walking tokens with encoding/json's
// Decoder and splicing bytes; they never decode and re-encode the body. On
// error they return the body unchanged with an error wrapping [ErrBadBody]
// or [ErrNoMessages], so a caller can forward it as is (fail open).
//
// All functions are safe for concurrent use.
package inject
