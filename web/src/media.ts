// The media seam. Media never rides the message path (DESIGN.md principle 8): a message will
// carry a reference to a blob uploaded over HTTP (ciphertext once E2E lands), and this module is
// where the client will upload, download and describe them. Not built yet: the composer offers
// no attachment, and a received payload that is not text is shown as unreadable.

/** Whether this client can send and show media (false until the media work lands). */
export const mediaSupported = false;

/** The notice shown where an attachment button would be. */
export const mediaNotice = 'Photos and files are not supported yet.';
