// Package providers talks to LLM backends: an OpenAI-compatible client that
// forwards chat bodies losslessly, an Ollama client that translates between
// the OpenAI and Ollama wire formats, local embedders, and a Router that picks
// a backend by model name.
package providers
