// Package anthropic translates between Anthropic's Messages API and OpenAI
// chat completions, dso's hub format, in both directions: requests,
// whole answers and streams.
//
// Messages → chat serves Anthropic clients (Claude Code, the Anthropic
// SDKs) over OpenAI-compatible and Ollama backends; chat → Messages serves
// chat-completions, Responses and Ollama clients over an Anthropic backend.
// Same-format routes (Messages over an Anthropic backend) never come here:
// their bytes are relayed untouched.
//
// It owns the wire formats and nothing else: no HTTP, no backends. Every
// translator is bounded (stream lines, tool calls, content blocks), never
// panics on hostile input, and emits valid JSON when it returns no error.
// What a translation cannot carry it either approximates and names in
// Info.Dropped, or refuses with an error that wraps ErrInvalid and is safe
// to show the client.
package anthropic
