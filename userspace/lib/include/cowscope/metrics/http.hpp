// cowtrace --serve's HTTP side (library cowhttp, not cowcore: only cowtrace
// and the tests link libmicrohttpd and GnuTLS): the listen address, and a
// server for GET /metrics over GNU libmicrohttpd (Debian's libmicrohttpd12:
// HTTP/1.1 parsing, keep-alive, TLS through GnuTLS), with the web
// configuration's TLS and basic auth (web_config.hpp) and limits that hold
// against a flood or a slow client. What it serves is exporter.hpp's;
// serve.cpp (src/trace/) joins the two to a Tracer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "cowscope/metrics/web_config.hpp"

namespace cowtrace {

// "127.0.0.1:9477", "[::1]:9477", "localhost:9477", ":9477" or "9477"
// (loopback), "0.0.0.0:9477" (every interface: asked for explicitly, and
// only with TLS: check_exposure). Numeric addresses only. Throws
// UsageError naming --serve.
struct ListenAddr {
	std::string host;	// numeric, as given ("127.0.0.1" when omitted)
	bool v6 = false;
	std::uint16_t port = 0;	// 0: any free port
	std::string text() const;	// "127.0.0.1:9477", "[::1]:9477"
	bool loopback() const;	// 127.0.0.0/8 or ::1
};
ListenAddr parse_listen(std::string_view text);

// Who can read what is served at `addr` with `web`: whoever reaches the
// port reads the names and pids of the traced processes. A non-loopback
// address without TLS throws UsageError (loopback only without
// --web-config's tls_server_config); returns a warning (empty if none) for
// TLS that nobody has to authenticate to (no basic_auth_users, no client
// certificates required) and for basic auth without TLS.
std::string check_exposure(const ListenAddr &addr, const WebConfig &web);

// Password guessing, bounded: every password not yet seen to be right costs
// a crypt(5) run (bcrypt: tens of milliseconds by design, on the one thread
// that also answers scrapes). After `burst` wrong passwords from one
// address, that address gets 429 (without a crypt run) until `window_s`
// have passed since its first failure; a password already checked right
// (remembered as a digest, no crypt run) is still let in. At most
// `addresses` addresses are remembered; the one whose window ends first
// makes room. Time is passed in (seconds, monotonic) to be testable.
class AuthThrottle {
public:
	explicit AuthThrottle(unsigned burst = 10, double window_s = 60, std::size_t addresses = 4096)
		: burst_(burst), window_s_(window_s), max_(addresses) {}
	// may `addr` have a new password checked now?
	bool allowed(const std::string &addr, double now);
	// seconds until it may (0 when allowed)
	double retry_after(const std::string &addr, double now) const;
	void failed(const std::string &addr, double now);
	std::size_t size() const { return seen_.size(); }

private:
	struct Entry {
		unsigned fails = 0;
		double since = 0;
	};
	unsigned burst_;
	double window_s_;
	std::size_t max_;
	std::map<std::string, Entry, std::less<>> seen_;
};

// What one connection and all of them together may take. A request whose
// line and headers do not fit head_bytes is answered 414 or 431 and closed;
// more than max_headers headers: 431. A connection idle (nothing received
// or sent) for timeout_s is closed: a client that sends nothing, or a
// request line without an end, holds a slot for timeout_s at most. At most
// `connections` at once (lowered to what RLIMIT_NOFILE allows after
// raising its soft limit towards the hard one), at most `per_ip` from one
// address: a flood from one address leaves room for others.
struct HttpLimits {
	unsigned connections = 2048;
	unsigned per_ip = 1024;
	unsigned timeout_s = 10;
	std::size_t head_bytes = 8192;	// MHD_OPTION_CONNECTION_MEMORY_LIMIT
	unsigned max_headers = 64;
};

// Where a request goes, from its method and URL (pure).
enum class Route { Metrics, Index, NotFound, MethodNotAllowed };
Route route(std::string_view method, std::string_view url);

// The server: bound and listening at construction (a port in use throws
// Error "--serve 127.0.0.1:9477: address already in use ..."); TLS when
// web.tls(). Requests are answered inside run(), on the caller's thread:
// GET or HEAD /metrics -> handler(the Accept header) gives (content type,
// body); / -> a link; other paths 404, other methods 405. With basic-auth
// users every path needs a user and password (401 otherwise); with client
// certificates required or given, one that does not verify against
// client_ca_file gets 403.
class HttpServer {
public:
	struct Response {
		std::string type, body;
	};
	using Handler = std::function<Response(const std::string &accept)>;

	HttpServer(const ListenAddr &addr, const WebConfig &web, const HttpLimits &limits = {});
	~HttpServer();
	HttpServer(const HttpServer &) = delete;
	HttpServer &operator=(const HttpServer &) = delete;

	std::uint16_t port() const;	// the bound one (for port 0)
	const HttpLimits &limits() const;	// as applied (connections may be lowered)
	// "http://127.0.0.1:9477/metrics" or "https://..."
	std::string url() const;
	// Serve what arrives for up to `timeout_ms` (less when a connection's
	// timeout falls due first). Returns how many /metrics requests
	// `handler` answered.
	unsigned run(int timeout_ms, const Handler &handler);

private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
};

} // namespace cowtrace
