// Package viz tests viz's metrics API, CLI and dashboard against real
// processes on loopback: meshed proxies under traffic, a real Prometheus
// scraping them with the chart's relabelings, and the weft-controller
// metrics-api and web subcommands.
package viz
