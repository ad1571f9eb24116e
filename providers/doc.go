// Package providers talks to LLM backends: an OpenAI-compatible client that
// forwards chat bodies losslessly, an Ollama client that translates between
// the OpenAI and Ollama wire formats, an Anthropic client that forwards
// Messages bodies losslessly and serves OpenAI chat bodies through package
// anthropic's translation, local embedders, and a Router that picks a
// backend by model name.
package providers
