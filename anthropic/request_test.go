package anthropic

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
)

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

var toChatTests = []struct {
	name, in, want string
	dropped        []string
}{
	{
		"text and system string",
		`{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.","messages":[{"role":"user","content":"Hello"}],"temperature":0.5,"top_p":0.9,"top_k":40,"stop_sequences":["END"],"metadata":{"user_id":"u-1"}}`,
		`{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}],"max_tokens":1024,"temperature":0.5,"top_p":0.9,"stop":["END"],"user":"u-1"}`,
		[]string{DroppedTopK},
	},
	{
		"system blocks with cache_control, stream",
		`{"model":"m","max_tokens":10,"stream":true,"system":[{"type":"text","text":"A"},{"type":"text","text":"B","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}`,
		`{"model":"m","messages":[{"role":"system","content":"A\n\nB"},{"role":"user","content":"hi"}],"max_tokens":10,"stream":true,"stream_options":{"include_usage":true}}`,
		[]string{DroppedCacheControl},
	},
	{
		"images",
		`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"image_url","image_url":{"url":"https://example.com/a.jpg"}}]}],"max_tokens":10}`,
		nil,
	},
	{
		"tool round trip",
		`{"model":"m","max_tokens":100,"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}},{"name":"noargs"}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},"messages":[` +
			`{"role":"user","content":"Weather in Paris?"},` +
			`{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location": "Paris"}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"12C"},{"type":"text","text":"And tomorrow?"}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"},` +
			`{"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},` +
			`{"role":"tool","content":"12C","tool_call_id":"toolu_1"},{"role":"user","content":"And tomorrow?"}],"max_tokens":100,` +
			`"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"noargs","parameters":{"type":"object","properties":{}}}}],` +
			`"tool_choice":"required","parallel_tool_calls":false}`,
		[]string{DroppedThinking},
	},
	{
		"tool results: blocks, error, image, only tool calls",
		`{"model":"m","max_tokens":5,"tools":[{"name":"shot","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"shot"},"messages":[` +
			`{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"shot","input":{}},{"type":"tool_use","id":"b","name":"shot"}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"text","text":"x"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]},{"type":"tool_result","tool_use_id":"b","is_error":true,"content":"boom"}]}]}`,
		`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"shot","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"shot","arguments":"{}"}}]},` +
			`{"role":"tool","content":"x","tool_call_id":"a"},{"role":"tool","content":"Error: boom","tool_call_id":"b"},` +
			`{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/"}}]}],"max_tokens":5,` +
			`"tools":[{"type":"function","function":{"name":"shot","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"shot"}}}`,
		nil,
	},
	{
		"documents, tool_choice without tools, thinking config",
		`{"model":"m","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":2000},"tool_choice":{"type":"auto"},"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain"}},{"type":"document","title":"r.pdf","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"plain"},{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0=","filename":"r.pdf"}}]}],"max_tokens":5}`,
		[]string{DroppedThinking},
	},
}

func TestRequestToChat(t *testing.T) {
	for _, tt := range toChatTests {
		t.Run(tt.name, func(t *testing.T) {
			got, info, err := RequestToChat([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, got, tt.want)
			if !slices.Equal(info.Dropped, tt.dropped) {
				t.Errorf("dropped %q; want %q", info.Dropped, tt.dropped)
			}
		})
	}
}

func TestRequestToChatInfo(t *testing.T) {
	_, info, err := RequestToChat([]byte(`{"model":"claude","max_tokens":1,"stream":true,"stop_sequences":["a","b"],"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if info.Model != "claude" || !info.Stream || !slices.Equal(info.StopSequences, []string{"a", "b"}) {
		t.Errorf("info %+v", info)
	}
}

var toChatErrors = []struct{ name, in string }{
	{"not json", `{"model":`},
	{"array", `[]`},
	{"no model", `{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}`},
	{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}]}`},
	{"zero max_tokens", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`},
	{"no messages", `{"model":"m","max_tokens":1,"messages":[]}`},
	{"system role", `{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`},
	{"bad content", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":3}]}`},
	{"server tool", `{"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]}`},
	{"file image", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`},
	{"unknown block", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"search_result"}]}]}`},
	{"tool_use not object", `{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"n","input":[1]}]}]}`},
	{"tool_result without id", `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}`},
	{"bad tool_choice", `{"model":"m","max_tokens":1,"tools":[{"name":"a"}],"tool_choice":{"type":"sometimes"},"messages":[{"role":"user","content":"x"}]}`},
	{"system image", `{"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]}`},
}

func TestRequestToChatErrors(t *testing.T) {
	for _, tt := range toChatErrors {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := RequestToChat([]byte(tt.in)); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v; want ErrInvalid", err)
			}
		})
	}
}

var fromChatTests = []struct {
	name, in, want string
	dropped        []string
}{
	{
		"system messages joined, default max_tokens",
		`{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"},{"role":"developer","content":[{"type":"text","text":"Use French."}]}],"temperature":1.5,"seed":3,"user":"u-1","stop":"END","stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"text","text":"Hello"}]}],"system":"Be brief.\n\nUse French.","max_tokens":4096,"temperature":1,"stop_sequences":["END"],"stream":true,"metadata":{"user_id":"u-1"}}`,
		[]string{DroppedTemperature, DroppedSampling},
	},
	{
		"tools, images and merged turns",
		`{"model":"m","max_completion_tokens":300,"max_tokens":9,"parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"get_weather","description":"W","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"messages":[` +
			`{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},{"type":"image_url","image_url":{"url":"https://example.com/a.jpg"}}]},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"get_weather","arguments":""}}],"reasoning_content":"thought"},` +
			`{"role":"tool","tool_call_id":"call_1","content":"12C"},{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"13C"}]},{"role":"user","content":"Thanks"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},{"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}}]},` +
			`{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"location":"Paris"}},{"type":"tool_use","id":"call_2","name":"get_weather","input":{}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"12C"},{"type":"tool_result","tool_use_id":"call_2","content":"13C"},{"type":"text","text":"Thanks"}]}],` +
			`"max_tokens":300,"tools":[{"name":"get_weather","description":"W","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}}],"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}}`,
		nil,
	},
	{
		"tool_choice strings, json mode, pdf",
		`{"model":"m","max_tokens":7,"response_format":{"type":"json_object"},"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","messages":[{"role":"user","content":[{"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBE"}}]},{"role":"assistant","content":[{"type":"text","text":"ok"}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"},"title":"a.pdf"}]},{"role":"assistant","content":[{"type":"text","text":"ok"}]}],"max_tokens":7,"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any"}}`,
		[]string{DroppedJSONMode},
	},
}

func TestRequestFromChat(t *testing.T) {
	for _, tt := range fromChatTests {
		t.Run(tt.name, func(t *testing.T) {
			got, info, err := RequestFromChat([]byte(tt.in), 0)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, got, tt.want)
			if !slices.Equal(info.Dropped, tt.dropped) {
				t.Errorf("dropped %q; want %q", info.Dropped, tt.dropped)
			}
		})
	}
	_, info, err := RequestFromChat([]byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`), 0)
	if err != nil || !info.Stream || !info.IncludeUsage || info.Model != "m" {
		t.Errorf("info %+v, %v", info, err)
	}
	got, _, err := RequestFromChat([]byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`), 77)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"max_tokens":77}`)
}

var fromChatErrors = []struct{ name, in string }{
	{"not json", `{`},
	{"no model", `{"messages":[{"role":"user","content":"x"}]}`},
	{"n", `{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}`},
	{"only system", `{"model":"m","messages":[{"role":"system","content":"x"}]}`},
	{"function role", `{"model":"m","messages":[{"role":"function","content":"x"}]}`},
	{"bad args", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{nope"}}]}]}`},
	{"tool without id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`},
	{"json schema", `{"model":"m","response_format":{"type":"json_schema","json_schema":{"schema":{}}},"messages":[{"role":"user","content":"x"}]}`},
	{"audio", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`},
	{"ftp image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}`},
	{"zero max", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`},
	{"bad tool type", `{"model":"m","tools":[{"type":"custom"}],"messages":[{"role":"user","content":"x"}]}`},
	{"bad tool_choice", `{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes","messages":[{"role":"user","content":"x"}]}`},
}

func TestRequestFromChatErrors(t *testing.T) {
	for _, tt := range fromChatErrors {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := RequestFromChat([]byte(tt.in), 0); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v; want ErrInvalid", err)
			}
		})
	}
}
