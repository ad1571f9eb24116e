// Package config owns dso's settings: the YAML file, environment overrides,
// flags applied on top by the command, defaults, and validation that reports
// every problem with its field path and line.
package config
