// Package proxy is dso's HTTP surface: the OpenAI and Ollama routes, the
// streaming relay, error shapes, middleware (request ids, auth, body limits,
// metrics, logging) and operational endpoints.
package proxy
