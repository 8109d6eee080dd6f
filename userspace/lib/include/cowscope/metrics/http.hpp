// cowtrace --serve's HTTP side (in cowcore, unit-tested): the listen
// address and a small HTTP/1.1 listener for GET /metrics. What it serves
// is exporter.hpp's; serve.cpp (src/trace/) joins the two to a Tracer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cowscope/base/fd.hpp"

namespace cowtrace {

// "127.0.0.1:9477", "[::1]:9477", "localhost:9477", ":9477" or "9477"
// (loopback), "0.0.0.0:9477" (every interface: asked for explicitly).
// Numeric addresses only. Throws UsageError naming --serve.
struct ListenAddr {
	std::string host;	// numeric, as given ("127.0.0.1" when omitted)
	bool v6 = false;
	std::uint16_t port = 0;	// 0: any free port
	std::string text() const;	// "127.0.0.1:9477", "[::1]:9477"
};
ListenAddr parse_listen(std::string_view text);

// A listening TCP socket (bound at construction: a port in use throws
// Error "--serve 127.0.0.1:9477: address already in use ...").
class HttpListener {
public:
	explicit HttpListener(const ListenAddr &addr);
	std::uint16_t port() const { return port_; }	// the bound one (for port 0)
	int fd() const { return fd_.get(); }
	// One request, if a client connects within `timeout_ms`: read its head
	// (at most 8 KiB, 2 s), answer through `handler`, close. GET /metrics ->
	// handler(accept header) gives (content type, body); GET / -> a link;
	// anything else 404/405. Returns false when nobody came.
	struct Response {
		std::string type, body;
	};
	template <class F> bool serve_one(int timeout_ms, F &&handler)
	{
		int c = accept_within(timeout_ms);
		if (c < 0)
			return false;
		cowscope::UniqueFd conn(c);
		Request r = read_request(conn.get());
		if (r.ok && (r.method == "GET" || r.method == "HEAD") && (r.path == "/metrics" || r.path.rfind("/metrics?", 0) == 0)) {
			Response resp = handler(r.accept);
			reply(conn.get(), 200, resp.type, r.method == "HEAD" ? std::string() : resp.body, resp.body.size());
		} else {
			answer_other(conn.get(), r);
		}
		return true;
	}

	struct Request {
		bool ok = false;
		std::string method, path, accept;
	};
	// parse a request head (exposed for the unit tests)
	static Request parse_request(std::string_view head);

private:
	cowscope::UniqueFd fd_;
	std::uint16_t port_ = 0;
	int accept_within(int timeout_ms);
	static Request read_request(int fd);
	static void reply(int fd, int code, const std::string &type, const std::string &body, std::size_t length);
	static void answer_other(int fd, const Request &r);
};

} // namespace cowtrace
