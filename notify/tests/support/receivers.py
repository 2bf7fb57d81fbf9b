"""Loopback receivers for antcode-notify's tests: each vendor's endpoint, checked as it documents.

Usage: receivers.py CONFIG_JSON. CONFIG_JSON names the secrets and tokens the receivers expect,
the TLS certificate and key for the SMTP servers, and the SMTP login. The script prints one JSON
line with its ports ({"http", "smtp_starttls", "smtps"}) and serves until its stdin closes.

HTTP (one server, a path per vendor):
  POST /webhook                          AntCode's generic webhook: X-AntCode-Signature is
                                         "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body),
                                         X-AntCode-Timestamp within 300 s of now, else 401.
  POST /dingtalk/robot/send?access_token=T&timestamp=MS&sign=S
                                         DingTalk custom robot with 加签: sign is
                                         base64(HMAC-SHA256(secret, f"{timestamp}\n{secret}")),
                                         URL-encoded; timestamp in ms within one hour.
  POST /feishu/open-apis/bot/v2/hook/T   Feishu custom bot with 签名校验: body carries timestamp (s)
                                         and sign = base64(HMAC-SHA256(key=f"{timestamp}\n{secret}",
                                         msg=b"")); timestamp within one hour.
  POST /wecom/cgi-bin/webhook/send?key=K WeCom group robot: the key is the credential.
  POST /slack/services/PATH              Slack incoming webhook: the path is the credential.
  POST /status/N                         answers HTTP N (to test retry classification).
  GET  /_received                        every request received so far, with its verdict.

SMTP: aiosmtpd with STARTTLS required before AUTH (smtp_starttls) and with implicit TLS
(smtps); both require AUTH with the configured login, and record each accepted message.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

CONFIG = json.loads(sys.argv[1])
RECEIVED = []
LOCK = threading.Lock()


def record(kind, ok, **fields):
    with LOCK:
        RECEIVED.append(dict(kind=kind, ok=ok, **fields))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_received":
            with LOCK:
                self.reply(200, list(RECEIVED))
        else:
            self.reply(404, "not found", "text/plain")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/webhook":
            self.webhook(body)
        elif url.path == "/dingtalk/robot/send":
            self.dingtalk(query, body)
        elif url.path.startswith("/feishu/open-apis/bot/v2/hook/"):
            self.feishu(url.path.rsplit("/", 1)[1], body)
        elif url.path == "/wecom/cgi-bin/webhook/send":
            self.wecom(query, body)
        elif url.path.startswith("/slack/services/"):
            self.slack(url.path[len("/slack/services/"):], body)
        elif url.path.startswith("/status/"):
            status = int(url.path.rsplit("/", 1)[1])
            record("status", False, status=status)
            self.reply(status, "status %d as asked" % status, "text/plain")
        else:
            self.reply(404, "not found", "text/plain")

    def webhook(self, body):
        secret = CONFIG["webhook_secret"].encode()
        ts = self.headers.get("X-AntCode-Timestamp", "")
        sig = self.headers.get("X-AntCode-Signature", "")
        delivery = self.headers.get("X-AntCode-Delivery", "")
        expected = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            record("webhook", False, why="stale timestamp", delivery=delivery)
            return self.reply(401, {"error": "timestamp outside the replay window"})
        if not hmac.compare_digest(expected, sig):
            record("webhook", False, why="bad signature", delivery=delivery)
            return self.reply(401, {"error": "bad signature"})
        payload = json.loads(body)
        record("webhook", True, delivery=delivery, payload=payload)
        self.reply(200, {"ok": True})

    def dingtalk(self, query, body):
        token = query.get("access_token", [""])[0]
        if token != CONFIG["dingtalk_token"]:
            record("dingtalk", False, why="token")
            return self.reply(200, {"errcode": 300001, "errmsg": "token is not exist"})
        secret = CONFIG.get("dingtalk_secret")
        if secret:
            timestamp = query.get("timestamp", [""])[0]
            sign = query.get("sign", [""])[0]  # parse_qs has already URL-decoded it
            string_to_sign = "{}\n{}".format(timestamp, secret)
            hmac_code = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), digestmod=hashlib.sha256).digest()
            expected = base64.b64encode(hmac_code).decode()
            fresh = timestamp.isdigit() and abs(time.time() * 1000 - int(timestamp)) <= 3600 * 1000
            if not fresh or not hmac.compare_digest(expected, sign):
                record("dingtalk", False, why="sign")
                return self.reply(200, {"errcode": 310000, "errmsg": "sign not match"})
        msg = json.loads(body)
        if msg.get("msgtype") != "text" or not msg.get("text", {}).get("content"):
            record("dingtalk", False, why="body")
            return self.reply(200, {"errcode": 40035, "errmsg": "缺少参数 json"})
        record("dingtalk", True, text=msg["text"]["content"])
        self.reply(200, {"errcode": 0, "errmsg": "ok"})

    def feishu(self, token, body):
        if token != CONFIG["feishu_token"]:
            record("feishu", False, why="token")
            return self.reply(200, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
        msg = json.loads(body)
        secret = CONFIG.get("feishu_secret")
        if secret:
            timestamp = str(msg.get("timestamp", ""))
            key = f"{timestamp}\n{secret}"
            hmac_code = hmac.new(key.encode("utf-8"), "".encode("utf-8"), digestmod=hashlib.sha256).digest()
            expected = base64.b64encode(hmac_code).decode("utf-8")
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 3600
            if not fresh or not hmac.compare_digest(expected, str(msg.get("sign", ""))):
                record("feishu", False, why="sign")
                return self.reply(200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"})
        if msg.get("msg_type") != "text" or not msg.get("content", {}).get("text"):
            record("feishu", False, why="body")
            return self.reply(200, {"code": 9499, "msg": "Bad Request"})
        record("feishu", True, text=msg["content"]["text"])
        self.reply(200, {"code": 0, "data": {}, "msg": "success"})

    def wecom(self, query, body):
        if query.get("key", [""])[0] != CONFIG["wecom_key"]:
            record("wecom", False, why="key")
            return self.reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
        msg = json.loads(body)
        content = msg.get("text", {}).get("content", "")
        if msg.get("msgtype") != "text" or not content:
            record("wecom", False, why="body")
            return self.reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
        if len(content.encode()) > 2048:
            record("wecom", False, why="too long")
            return self.reply(200, {"errcode": 40058, "errmsg": "content exceed max length 2048"})
        record("wecom", True, text=content)
        self.reply(200, {"errcode": 0, "errmsg": "ok"})

    def slack(self, path, body):
        if path != CONFIG["slack_path"]:
            record("slack", False, why="path")
            return self.reply(404, "no_service", "text/plain")
        msg = json.loads(body)
        if not msg.get("text"):
            record("slack", False, why="body")
            return self.reply(400, "no_text", "text/plain")
        record("slack", True, text=msg["text"])
        self.reply(200, "ok", "text/plain")


class MailHandler:
    def __init__(self, name):
        self.name = name

    async def handle_DATA(self, server, session, envelope):
        mail = message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        record(
            self.name,
            True,
            authenticated=bool(session.authenticated),
            # session.ssl is set by STARTTLS; an implicit-TLS connection shows in its transport.
            tls=session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            mail_from=envelope.mail_from,
            rcpt_tos=envelope.rcpt_tos,
            subject=str(mail["subject"]),
            body=mail.get_body(preferencelist=("plain",)).get_content(),
        )
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == CONFIG["smtp_user"]
        and auth_data.password.decode() == CONFIG["smtp_password"]
    )
    # handled=False: aiosmtpd then answers 535 itself (its default assumes we already replied).
    return AuthResult(success=ok, handled=False)


async def smtp_servers():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(CONFIG["cert"], CONFIG["key"])
    loop = asyncio.get_running_loop()
    starttls = await loop.create_server(
        lambda: SMTP(
            MailHandler("smtp_starttls"),
            tls_context=ctx,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticator,
        ),
        "127.0.0.1",
        0,
    )
    smtps = await loop.create_server(
        lambda: SMTP(
            MailHandler("smtps"),
            auth_required=True,
            auth_require_tls=False,
            authenticator=authenticator,
        ),
        "127.0.0.1",
        0,
        ssl=ctx,
    )
    return starttls.sockets[0].getsockname()[1], smtps.sockets[0].getsockname()[1]


def main():
    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    def watch_stdin():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    smtp_port, smtps_port = loop.run_until_complete(smtp_servers())
    print(json.dumps({"http": http.server_address[1], "smtp_starttls": smtp_port, "smtps": smtps_port}), flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
