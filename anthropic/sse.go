package anthropic

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// readSSE calls fn with the name and data of each server-sent event until
// fn reports done. A stream that ends first is io.ErrUnexpectedEOF. Lines
// and events are capped at MaxStreamLine.
func readSSE(src io.Reader, fn func(event string, data []byte) (done bool, err error)) error {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), MaxStreamLine)
	var event string
	var data []byte
	has := false
	dispatch := func() (bool, error) {
		if !has {
			event = ""
			return false, nil
		}
		e, d := event, data
		event, data, has = "", nil, false
		return fn(e, d)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if done, err := dispatch(); err != nil || done {
				return err
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			event = string(value)
		case "data":
			if has {
				data = append(data, '\n')
			}
			if len(data)+len(value) > MaxStreamLine {
				return fmt.Errorf("a stream event is larger than %d bytes", MaxStreamLine)
			}
			data = append(data, value...)
			has = true
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("a stream line is longer than %d bytes", MaxStreamLine)
		}
		return err
	}
	if done, err := dispatch(); err != nil || done {
		return err
	}
	return io.ErrUnexpectedEOF
}

// StreamError is an error a Messages stream reported in band (an error
// event): Type is Anthropic's error type, e.g. overloaded_error.
type StreamError struct {
	Type    string
	Message string
}

func (e *StreamError) Error() string {
	return "backend stream error: " + e.Type + ": " + e.Message
}
