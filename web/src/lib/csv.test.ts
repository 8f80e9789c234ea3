import { describe, expect, it } from "vitest";
import { guessDelimiter, previewRows } from "./csv";

describe("CSV preview", () => {
  it("guesses the delimiter from the header", () => {
    expect(guessDelimiter("name;email;phone\na;b;c")).toBe(";");
    expect(guessDelimiter("name,email\n")).toBe(",");
    expect(guessDelimiter("name\temail\tphone")).toBe("\t");
  });
  it("reads quoted cells, doubled quotes and quoted line breaks", () => {
    const text = '\ufeffname,notes\n"Rossi, Mario","said ""hi""\nthen left"\nBianchi,ok\n\nVerdi,x\n';
    expect(previewRows(text)).toEqual([["name", "notes"], ["Rossi, Mario", 'said "hi"\nthen left'], ["Bianchi", "ok"], ["Verdi", "x"]]);
    expect(previewRows(text, ",", 2)).toHaveLength(2);
  });
});
