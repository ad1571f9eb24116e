// Package completions translates OpenAI's legacy completions API
// (/v1/completions: a prompt in, text out) to and from chat completions,
// dso's hub format, for backends that serve only chat: a prompt becomes
// one user message, and the chat answer, whole or streamed, becomes
// text_completion objects.
package completions
