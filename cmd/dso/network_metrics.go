package main

import (
	"github.com/dso-proxy/dso/network"
	"github.com/prometheus/client_golang/prometheus"
)

// networkCollector exports what GET /v1/network shows of followed logs,
// read when scraped. Labels are bounded: the configured networks and
// peers, and the fixed vocabularies of outcomes, reasons and states. One
// collects every network: a registry takes each metric's description once.
type networkCollector struct {
	nodes   networkNodes
	size    *prometheus.Desc
	lag     *prometheus.Desc
	records *prometheus.Desc
	reject  *prometheus.Desc
	state   *prometheus.Desc
	bytes   *prometheus.Desc
}

func newNetworkCollector(nodes networkNodes) *networkCollector {
	l := []string{"network", "author"}
	return &networkCollector{
		nodes:   nodes,
		size:    prometheus.NewDesc("dso_network_log_size", "Entries in the last accepted checkpoint of a followed log.", l, nil),
		lag:     prometheus.NewDesc("dso_network_log_lag", "Entries of a followed log accepted but not yet admitted.", l, nil),
		records: prometheus.NewDesc("dso_network_records_total", "Records of a followed log, by outcome of admission.", append(l, "outcome"), nil),
		reject:  prometheus.NewDesc("dso_network_rejected_total", "Records and syncs of a followed log refused, by reason.", append(l, "reason"), nil),
		state:   prometheus.NewDesc("dso_network_log_state", "1 for the state a followed log is in.", append(l, "state"), nil),
		bytes:   prometheus.NewDesc("dso_network_fetched_bytes_total", "Bytes read from a followed log.", l, nil),
	}
}

func (c *networkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.lag, c.records, c.reject, c.state, c.bytes} {
		ch <- d
	}
}

func (c *networkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.nodes {
		c.collect(ch, n.cfg.ID, n.syncer)
	}
}

func (c *networkCollector) collect(ch chan<- prometheus.Metric, netID string, syncer *network.Syncer) {
	for _, ls := range syncer.Logs() {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(ls.Size), netID, ls.Author)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(ls.Lag), netID, ls.Author)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(ls.BytesFetched), netID, ls.Author)
		for k, v := range ls.Records {
			ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(v), netID, ls.Author, k)
		}
		for k, v := range ls.Rejected {
			ch <- prometheus.MustNewConstMetric(c.reject, prometheus.CounterValue, float64(v), netID, ls.Author, k)
		}
		for _, s := range []string{network.PeerOK, network.PeerBackingOff, network.PeerDropped, network.PeerForked, network.PeerUnwitnessed} {
			v := 0.0
			if s == ls.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, netID, ls.Author, s)
		}
	}
}

// register adds the networks' metrics to reg.
func (ns networkNodes) register(reg prometheus.Registerer) {
	if len(ns) > 0 {
		reg.MustRegister(newNetworkCollector(ns))
	}
}
