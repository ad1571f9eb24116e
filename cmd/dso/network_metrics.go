package main

import (
	"github.com/dso-proxy/dso/network"
	"github.com/prometheus/client_golang/prometheus"
)

// networkCollector exports what GET /v1/network shows of followed logs,
// read when scraped. Labels are bounded: the configured peers, and the
// fixed vocabularies of outcomes, reasons and states.
type networkCollector struct {
	netID   string
	syncer  *network.Syncer
	size    *prometheus.Desc
	lag     *prometheus.Desc
	records *prometheus.Desc
	reject  *prometheus.Desc
	state   *prometheus.Desc
	bytes   *prometheus.Desc
}

func newNetworkCollector(netID string, s *network.Syncer) *networkCollector {
	l := []string{"network", "author"}
	return &networkCollector{
		netID: netID, syncer: s,
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
	for _, ls := range c.syncer.Logs() {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(ls.Size), c.netID, ls.Author)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(ls.Lag), c.netID, ls.Author)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(ls.BytesFetched), c.netID, ls.Author)
		for k, v := range ls.Records {
			ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(v), c.netID, ls.Author, k)
		}
		for k, v := range ls.Rejected {
			ch <- prometheus.MustNewConstMetric(c.reject, prometheus.CounterValue, float64(v), c.netID, ls.Author, k)
		}
		for _, s := range []string{network.PeerOK, network.PeerBackingOff, network.PeerDropped, network.PeerForked} {
			v := 0.0
			if s == ls.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, c.netID, ls.Author, s)
		}
	}
}

// register adds n's metrics to reg.
func (n *networkNode) register(reg prometheus.Registerer) {
	if n != nil {
		reg.MustRegister(newNetworkCollector(n.cfg.ID, n.syncer))
	}
}
