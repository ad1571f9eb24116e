// Package responses translates OpenAI's Responses API to and from chat
// completions, dso's hub format: a request (its input items, the
// conversation before it, instructions, tools, text format and sampling
// settings) into a chat-completions body, and a chat answer, whole or as
// a stream of chunks, into a response object or the Responses event
// stream. It owns the items' wire shapes; storing responses is the
// caller's.
package responses
