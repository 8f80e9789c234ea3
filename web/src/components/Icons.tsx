// A few inline icons (no icon font: emoji glyphs are missing on many systems).
const props = { width: 16, height: 16, viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", strokeWidth: 2,
                strokeLinecap: "round" as const, strokeLinejoin: "round" as const, "aria-hidden": true };

export const ClockIcon = () => <svg {...props}><circle cx="12" cy="12" r="9" /><path d="M12 7v5l3 2" /></svg>;
export const PhoneIcon = () => (
  <svg {...props}><path d="M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2" /></svg>
);
export const CheckIcon = () => <svg {...props}><path d="M5 12l5 5L20 7" /></svg>;
