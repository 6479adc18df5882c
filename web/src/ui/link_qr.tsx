// The QR code of a link code, for the primary device to scan: the same text the terminal shows
// (`iris-link:K7QF-M2XD`, crates/iris/src/cmd/login.rs), drawn as one SVG path of dark modules
// (no markup strings, so nothing is injected into the page).

import qrcode from 'qrcode-generator';

/// Modules of quiet zone around the code (the standard asks for 4).
const QUIET = 4;

/// The SVG path of the dark modules of `text`'s QR code, and the side in modules (quiet zone
/// included).
export function qrPath(text: string): { d: string; size: number } {
  const qr = qrcode(0, 'M');
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  let d = '';
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      if (qr.isDark(row, col)) d += `M${col + QUIET} ${row + QUIET}h1v1h-1z`;
    }
  }
  return { d, size: n + 2 * QUIET };
}

/// The link code's QR code, scaled to its box.
export function LinkQr({ code }: { code: string }) {
  const { d, size } = qrPath(`iris-link:${code}`);
  return (
    <svg class="link-qr" role="img" aria-label={`QR code of link code ${code}`} viewBox={`0 0 ${size} ${size}`}
      shape-rendering="crispEdges">
      <rect width={size} height={size} fill="#fff" />
      <path d={d} fill="#000" />
    </svg>
  );
}
