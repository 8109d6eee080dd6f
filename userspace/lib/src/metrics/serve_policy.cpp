// cowtrace --serve's rules before any connection (see http.hpp): the
// listen address, whether it may be served without TLS, the throttle on
// wrong passwords, and which requests go where. The server itself, over
// libmicrohttpd, is http.cpp's.
#include "cowscope/metrics/http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowtrace {

// ---- the listen address ------------------------------------------------

std::string ListenAddr::text() const
{
	return v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

bool ListenAddr::loopback() const
{
	if (v6) {
		in6_addr a{};
		return inet_pton(AF_INET6, host.c_str(), &a) == 1 && IN6_IS_ADDR_LOOPBACK(&a);
	}
	in_addr a{};
	return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
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

std::string check_exposure(const ListenAddr &addr, const WebConfig &web)
{
	if (!addr.loopback() && !web.tls())
		throw cowscope::UsageError(fmt::format(
			"--serve {}: not a loopback address, and there is no TLS: whoever reaches the port would read "
			"the names and pids of the traced processes. Give --web-config FILE with tls_server_config "
			"(and basic_auth_users or client certificates), or serve on 127.0.0.1 (cowtrace(1))",
			addr.text()));
	if (!addr.loopback() && web.users.empty() && web.client_auth != ClientAuth::RequireAndVerify)
		return fmt::format("serving {} over TLS without authentication: whoever reaches the port reads the "
				   "names and pids of the traced processes; add basic_auth_users or "
				   "client_auth_type: RequireAndVerifyClientCert to the web config",
				   addr.text());
	if (!web.users.empty() && !web.tls())
		return "basic auth without TLS: passwords cross the network in clear; add tls_server_config to "
		       "the web config";
	return "";
}

bool AuthThrottle::allowed(const std::string &addr, double now)
{
	auto it = seen_.find(addr);
	if (it == seen_.end())
		return true;
	if (now - it->second.since >= window_s_) {
		seen_.erase(it);
		return true;
	}
	return it->second.fails < burst_;
}

double AuthThrottle::retry_after(const std::string &addr, double now) const
{
	auto it = seen_.find(addr);
	if (it == seen_.end() || it->second.fails < burst_)
		return 0;
	return std::max(0.0, it->second.since + window_s_ - now);
}

void AuthThrottle::failed(const std::string &addr, double now)
{
	auto it = seen_.find(addr);
	if (it != seen_.end() && now - it->second.since >= window_s_)
		it->second = Entry{};
	if (it == seen_.end()) {
		if (seen_.size() >= max_) {
			auto oldest = std::min_element(seen_.begin(), seen_.end(), [](const auto &a, const auto &b) {
				return a.second.since < b.second.since;
			});
			seen_.erase(oldest);
		}
		it = seen_.emplace(addr, Entry{}).first;
	}
	if (it->second.fails == 0)
		it->second.since = now;
	it->second.fails++;
}

Route route(std::string_view method, std::string_view url)
{
	if (method != "GET" && method != "HEAD")
		return Route::MethodNotAllowed;
	std::string_view path = url.substr(0, url.find('?'));
	if (path == "/metrics")
		return Route::Metrics;
	if (path == "/")
		return Route::Index;
	return Route::NotFound;
}

} // namespace cowtrace
