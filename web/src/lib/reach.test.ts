import { describe, expect, it } from "vitest";
import { reachKind, readable } from "./reach";

describe("reachKind", () => {
  it("names urllib3's refused connection as unreachable", () => {
    expect(reachKind("HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /x "
      + "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish "
      + "a new connection: [Errno 111] Connection refused'))").kind).toBe("unreachable");
    expect(reachKind("[Errno -2] Name or service not known").kind).toBe("unreachable");
  });
  it("tells timeouts, sign-in and TLS failures and HTTP answers apart", () => {
    expect(reachKind("ReadTimeoutError: Read timed out. (read timeout=10)").kind).toBe("timeout");
    expect(reachKind("b'[AUTHENTICATIONFAILED] Invalid credentials (Failure)'").kind).toBe("auth");
    expect(reachKind("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed").kind).toBe("tls");
    expect(reachKind("HTTP 502 from the endpoint")).toEqual({ kind: "http", status: "502" });
    expect(reachKind("something odd").kind).toBe("failed");
  });
});

describe("readable", () => {
  it("keeps the API's own sentences and names connection failures", () => {
    const t = (key: string) => key;
    expect(readable("Write a reply first", t)).toBe("Write a reply first");
    expect(readable("SMTP: [Errno 111] Connection refused", t)).toBe("reach_unreachable");
  });
});
