/// Whether frames are encrypted.
public enum ChannelMode: String, Sendable, CaseIterable {
    /// Every frame is AEAD-protected with the session keys (the default):
    /// code in the same guest that reaches the channel view learns nothing
    /// and cannot forge or replay.
    case encrypted
    /// Frames travel in plaintext and may be read in place (zero copy). The
    /// handshake still authenticates the peer; confidentiality and integrity
    /// rest on view isolation alone.
    case isolated
}

/// Which AEAD the session uses.
public enum ChannelSuite: String, Sendable, CaseIterable {
    case chachapoly
    case aesgcm
}
