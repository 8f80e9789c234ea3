import { describe, expect, it } from "vitest";
import { leadLabel } from "./reminders";

describe("reminder lead times", () => {
  it("read in the largest whole unit, in the user's language", () => {
    expect(leadLabel(15, "en")).toBe("15 minutes");
    expect(leadLabel(120, "en")).toBe("2 hours");
    expect(leadLabel(1440, "it")).toBe("1 giorno");
    expect(leadLabel(90, "en")).toBe("90 minutes");
    expect(leadLabel(0, "en")).toBe("0 minutes");
  });
});
