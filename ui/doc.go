// Package ui is dso's web dashboard, served at /ui/: an overview of
// traffic and retrieval, the experience library, recent traces with
// grading, and (a placeholder for now) the network.
//
// It owns the pages and their static assets, embedded in the binary, and
// the headers they are served with (a strict Content-Security-Policy among
// them). It holds no data and no credentials: the pages' scripts call the
// same JSON API as any client (package proxy serves it, and authorises each
// call as it would any other), sending an admin key that the user enters
// and the browser keeps for the session only. Experience text and traces
// are untrusted and only ever inserted into the page as text.
package ui
