// page.cpp - render_item_page: a self-contained HTML page (no external
// resources, one inline script allowed by a CSP nonce) for an item's link.
// Reads no configuration; server.cpp decides when to show it.
#include "gateway/page.h"

#include "gateway/http.h"

#include <cstdio>

namespace mm {


std::string item_page_csp(const std::string& nonce)
{
    // Nothing but our own media and the one script; no framing, no form posts.
    return "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; script-src 'nonce-" + nonce +
           "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

std::string render_item_page(const PageInfo& p)
{
    const bool video = p.type.rfind("video/", 0) == 0;
    const bool audio = p.type.rfind("audio/", 0) == 0;
    const std::string name = p.name.empty() ? "media" : p.name;
    const std::string heading = p.title.empty() ? name : p.title;
    const std::string src = html_escape(p.self);

    std::string h;
    h.reserve(4096);
    h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         "<meta name=\"referrer\" content=\"no-referrer\">\n<title>";
    h += html_escape(heading);
    h += "</title>\n<style>\n"
         "body{margin:0;background:#f4f5f7;color:#1d2330;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",sans-serif}\n"
         "main{max-width:46rem;margin:2.5rem auto;background:#fff;border-radius:12px;padding:1.75rem 2rem;"
         "box-shadow:0 2px 12px rgba(0,0,0,.08)}\n"
         "h1{font-size:1.45rem;margin:0 0 .25rem;word-break:break-word}\n"
         ".file{color:#5a6270;margin:0 0 1.25rem;word-break:break-all}\n"
         "video,audio{width:100%;margin:0 0 1.25rem;border-radius:8px;background:#000}\n"
         "audio{background:none}\n"
         ".note{white-space:pre-wrap;border-left:3px solid #c9d1dd;padding-left:1rem;margin:0 0 1.25rem}\n"
         "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.25rem;margin:0 0 1.5rem}\n"
         "dt{color:#5a6270}dd{margin:0;word-break:break-word}\n"
         "a.button{display:inline-block;background:#2457c5;color:#fff;text-decoration:none;font-weight:600;"
         "padding:.65rem 1.4rem;border-radius:8px}\n"
         "a.button:hover{background:#1b47a5}\n"
         "footer{color:#8a919c;font-size:.8rem;margin-top:1.5rem}\n"
         "</style></head>\n<body><main>\n<h1>";
    h += html_escape(heading);
    h += "</h1>\n<p class=\"file\">";
    h += html_escape(name);
    h += " &middot; ";
    h += html_escape(human_size(p.size));
    h += "</p>\n";
    if (video)
        h += "<video id=\"player\" controls preload=\"metadata\" playsinline src=\"" + src + "\"></video>\n";
    else if (audio)
        h += "<audio id=\"player\" controls preload=\"metadata\" src=\"" + src + "\"></audio>\n";
    if (!p.note.empty())
        h += "<p class=\"note\">" + html_escape(p.note) + "</p>\n";
    h += "<dl>\n";
    auto row = [&](const char* label, const std::string& value) {
        if (!value.empty())
            h += std::string("<dt>") + label + "</dt><dd>" + html_escape(value) + "</dd>\n";
    };
    row("File", name);
    row("Size", human_size(p.size) + " (" + std::to_string(p.size) + " bytes)");
    row("Type", p.type);
    row("Sent", p.date);
    row("Available until", p.expires);
    row("Copyright", p.copyright);
    h += "</dl>\n<p><a class=\"button\" id=\"download\" href=\"" + src + "?download=1\" download>Download</a></p>\n";
    h += "<footer>Sent with MediaMail: this link reached you by mail; the file comes straight from "
         "the sender's computer.</footer>\n</main>\n";
    // For tests in a headless browser: with #selftest the page plays the media
    // muted for a moment and reports readyState and currentTime in the title.
    h += "<script nonce=\"" + html_escape(p.nonce) +
         "\">\n"
         "if (location.hash === '#selftest') {\n"
         "  const v = document.getElementById('player');\n"
         "  const report = (what) => { document.title = 'selftest ' + what + ' readyState=' +"
         " (v ? v.readyState : -1) + ' currentTime=' + (v ? v.currentTime.toFixed(2) : -1); };\n"
         "  if (!v) { report('noplayer'); } else {\n"
         "    v.muted = true;\n"
         "    v.addEventListener('error', () => report('error'));\n"
         "    v.play().then(() => setTimeout(() => report('played'), 1500)).catch((e) => report('rejected'));\n"
         "  }\n"
         "}\n"
         "</script>\n</body></html>\n";
    return h;
}

} // namespace mm
