// cowtrace --serve's HTTP listener (see http.hpp).
#include "cowscope/metrics/http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <strings.h>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowtrace {

namespace {

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
		s.remove_suffix(1);
	return s;
}

} // namespace

// ---- HTTP -----------------------------------------------------------------

std::string ListenAddr::text() const
{
	return v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

ListenAddr parse_listen(std::string_view t)
{
	auto bad = [&](const char *why) {
		return cowscope::UsageError(fmt::format("--serve: expected ADDR:PORT like 127.0.0.1:9477, [::1]:9477 or "
							":9477 (loopback), got \"{}\" ({})", t, why));
	};
	ListenAddr a;
	std::string_view host, port;
	if (!t.empty() && t.front() == '[') {
		std::size_t close = t.find("]:");
		if (close == std::string_view::npos)
			throw bad("an IPv6 address goes in brackets, then :PORT");
		host = t.substr(1, close - 1);
		port = t.substr(close + 2);
		a.v6 = true;
	} else if (std::size_t colon = t.rfind(':'); colon != std::string_view::npos) {
		host = t.substr(0, colon);
		port = t.substr(colon + 1);
	} else {
		port = t;
	}
	if (port.empty() || port.size() > 5 ||
	    !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
		throw bad("PORT is a number from 0 to 65535");
	unsigned long p = std::stoul(std::string(port));
	if (p > 65535)
		throw bad("PORT is a number from 0 to 65535");
	a.port = static_cast<std::uint16_t>(p);
	if (host.empty() || host == "localhost")
		a.host = "127.0.0.1";
	else
		a.host = std::string(host);
	unsigned char buf[sizeof(in6_addr)];
	if (inet_pton(a.v6 ? AF_INET6 : AF_INET, a.host.c_str(), buf) != 1)
		throw bad(a.v6 ? "not a numeric IPv6 address" : "not a numeric IPv4 address (names are not resolved)");
	return a;
}

HttpListener::HttpListener(const ListenAddr &a)
{
	int family = a.v6 ? AF_INET6 : AF_INET;
	fd_ = cowscope::UniqueFd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!fd_)
		throw cowscope::SysError("failed to create a socket for --serve");
	int one = 1;
	// lets a restarted exporter bind while old connections sit in
	// TIME_WAIT; a port someone listens on still fails with EADDRINUSE
	setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_storage ss{};
	socklen_t len;
	if (a.v6) {
		auto *s6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a.port);
		inet_pton(AF_INET6, a.host.c_str(), &s6->sin6_addr);
		len = sizeof(*s6);
	} else {
		auto *s4 = reinterpret_cast<sockaddr_in *>(&ss);
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a.port);
		inet_pton(AF_INET, a.host.c_str(), &s4->sin_addr);
		len = sizeof(*s4);
	}
	if (bind(fd_.get(), reinterpret_cast<sockaddr *>(&ss), len) != 0) {
		int e = errno;
		if (e == EADDRINUSE)
			throw cowscope::Error(fmt::format("--serve {}: address already in use: another program listens on "
							  "port {}; choose another port",
							  a.text(), a.port));
		if (e == EADDRNOTAVAIL)
			throw cowscope::Error(fmt::format("--serve {}: {} is not an address of this machine", a.text(),
							  a.host));
		throw cowscope::Error(fmt::format("--serve {}: failed to bind: {}", a.text(), std::strerror(e)));
	}
	if (listen(fd_.get(), 64) != 0)
		throw cowscope::SysError(fmt::format("--serve {}: failed to listen", a.text()));
	sockaddr_storage got{};
	socklen_t glen = sizeof(got);
	getsockname(fd_.get(), reinterpret_cast<sockaddr *>(&got), &glen);
	port_ = ntohs(a.v6 ? reinterpret_cast<sockaddr_in6 *>(&got)->sin6_port
			   : reinterpret_cast<sockaddr_in *>(&got)->sin_port);
}

int HttpListener::accept_within(int timeout_ms)
{
	pollfd p{fd_.get(), POLLIN, 0};
	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
}

HttpListener::Request HttpListener::parse_request(std::string_view head)
{
	Request r;
	std::size_t eol = head.find("\r\n");
	std::string_view line = head.substr(0, eol);
	std::size_t s1 = line.find(' ');
	std::size_t s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
	if (s2 == std::string_view::npos || line.substr(s2 + 1).rfind("HTTP/1.", 0) != 0)
		return r;
	r.method = std::string(line.substr(0, s1));
	r.path = std::string(line.substr(s1 + 1, s2 - s1 - 1));
	while (eol != std::string_view::npos) {
		head = head.substr(eol + 2);
		eol = head.find("\r\n");
		std::string_view h = head.substr(0, eol);
		std::size_t colon = h.find(':');
		if (colon == std::string_view::npos)
			continue;
		if (std::string_view n = trim(h.substr(0, colon)); n.size() == 6 && strncasecmp(n.data(), "accept", 6) == 0)
			r.accept = std::string(trim(h.substr(colon + 1)));
	}
	r.ok = true;
	return r;
}

HttpListener::Request HttpListener::read_request(int fd)
{
	timeval tv{2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	timeval sv{5, 0};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sv, sizeof(sv));
	std::string head;
	char buf[2048];
	while (head.size() < 8192 && head.find("\r\n\r\n") == std::string::npos) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return {};
		head.append(buf, static_cast<std::size_t>(n));
	}
	if (head.find("\r\n\r\n") == std::string::npos)
		return {};
	return parse_request(head);
}

void HttpListener::reply(int fd, int code, const std::string &type, const std::string &body, std::size_t length)
{
	const char *reason = code == 200 ? "OK" : code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed"
										      : "Bad Request";
	std::string msg = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}"
				      "Connection: close\r\n\r\n",
				      code, reason, type, length, code == 405 ? "Allow: GET, HEAD\r\n" : "");
	msg += body;
	std::size_t off = 0;
	while (off < msg.size()) {
		ssize_t n = send(fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	// the client went away
		off += static_cast<std::size_t>(n);
	}
}

void HttpListener::answer_other(int fd, const Request &r)
{
	const char *text = "text/plain; charset=utf-8";
	if (!r.ok) {
		std::string b = "bad request\n";
		reply(fd, 400, text, b, b.size());
	} else if (r.method != "GET" && r.method != "HEAD") {
		std::string b = "only GET and HEAD\n";
		reply(fd, 405, text, b, b.size());
	} else if (r.path == "/") {
		std::string b = "<html><head><title>cowtrace</title></head><body><h1>cowtrace</h1>"
				"<p><a href=\"/metrics\">/metrics</a></p></body></html>\n";
		reply(fd, 200, "text/html; charset=utf-8", r.method == "HEAD" ? "" : b, b.size());
	} else {
		std::string b = "not found: try /metrics\n";
		reply(fd, 404, text, r.method == "HEAD" ? "" : b, b.size());
	}
}

} // namespace cowtrace
