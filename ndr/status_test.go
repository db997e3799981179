package ndr

import (
	"strconv"
	"testing"
)

func TestStatusText(t *testing.T) {
	tests := map[string]string{
		"5.7.0":    "Other or undefined security status",
		"4.7.4":    "Security features not supported",
		"5.7.4":    "Security features not supported",
		"5.7.5":    "Cryptographic failure",
		"5.7.8":    "Authentication credentials invalid",
		"5.7.10":   "Encryption Needed",
		"5.7.11":   "Encryption required for requested authentication mechanism",
		"5.7.30":   "REQUIRETLS support required",
		"4.4.1":    "No answer from host",
		"4.4.7":    "Delivery time expired",
		"5.1.1":    "Bad destination mailbox address",
		"5.1.10":   "Recipient address has null MX",
		"5.2.2":    "Mailbox full",
		"5.3.4":    "Message too big for system",
		"5.5.4":    "Invalid command arguments",
		"2.0.0":    "Other undefined status",
		"5.7.999":  "Security or policy status", // unregistered detail: subject meaning
		"5.9.1":    "",                          // unknown subject
		"5.7":      "",
		"3.1.1":    "",
		"5.1.1x":   "",
		"55.1.1":   "",
		"5.1234.1": "",
	}
	for code, want := range tests {
		if got := StatusText(code); got != want {
			t.Errorf("StatusText(%q) = %q, want %q", code, got, want)
		}
	}
	if got := StatusTextLang("5.7.4", "ja-JP"); got != "必要なセキュリティ機能に対応していません" {
		t.Errorf("Japanese 5.7.4 = %q", got)
	}
	if got := StatusTextLang("5.7.4", "fr"); got != "Security features not supported" {
		t.Errorf("unknown language must fall back to English, got %q", got)
	}
}

// TestStatusCatalogueComplete: every entry has both languages, and the
// module's constants are registered.
func TestStatusCatalogueComplete(t *testing.T) {
	for k, e := range statusCatalogue {
		if e.en == "" || e.ja == "" || e.en == e.ja {
			t.Errorf("catalogue entry %s incomplete: %+v", k, e)
		}
	}
	for _, c := range []string{StatusOK, StatusDelivered, StatusBadMailbox, StatusNullMX, StatusMailboxFull,
		StatusMessageTooBig, StatusNoAnswer, StatusBadConnection, StatusUnableToRoute, StatusExpired,
		StatusExpiredFailed, StatusSecurityOther, StatusNotAuthorized, StatusSTARTTLSRequired,
		StatusCryptoFailure, StatusAuthInvalid, StatusEncryptionNeeded, StatusEncryptionRequiredForAuth,
		StatusREQUIRETLSRequired} {
		_, s, d, ok := ParseStatus(c)
		if !ok {
			t.Errorf("constant %q malformed", c)
			continue
		}
		if _, found := statusCatalogue[strconv.Itoa(s)+"."+strconv.Itoa(d)]; !found {
			t.Errorf("constant %q not in the catalogue", c)
		}
	}
}

func TestTransientPermanent(t *testing.T) {
	if got := Transient(StatusCryptoFailure); got != "4.7.5" {
		t.Errorf("Transient = %q", got)
	}
	if got := Permanent("4.4.7"); got != "5.4.7" {
		t.Errorf("Permanent = %q", got)
	}
	if got := Transient("junk"); got != "junk" {
		t.Errorf("Transient(junk) = %q", got)
	}
}

func TestExplain(t *testing.T) {
	tests := []struct{ code, reply, lang, want string }{
		{"5.1.1", "550 5.1.1 No such user", "en", `The recipient's address does not exist at the destination. The remote server replied: "550 5.1.1 No such user"`},
		{"5.1.1", "550 5.1.1 No such user", "ja", "宛先のメールアドレスは存在しません。相手先サーバーの応答:「550 5.1.1 No such user」"},
		{"4.7.5", "", "en", "Encryption or certificate verification failed."},
		{"5.7.30", "", "ja", "メッセージには REQUIRETLS が指定されていますが、次のメールサーバーは REQUIRETLS に対応していません。"},
		{"5.6.3", "", "en", "Conversion required but not supported (5.6.3)."},
		{"5.6.3", "", "ja", "変換が必要ですが対応していません（5.6.3）。"},
		{"2.0.0", "250 ok", "en", `The message was delivered successfully. The remote server replied: "250 ok"`},
		{"", "550\r\n  multi   line", "en", `The message could not be delivered. The remote server replied: "550 multi line"`},
	}
	for _, tt := range tests {
		if got := Explain(tt.code, tt.reply, tt.lang); got != tt.want {
			t.Errorf("Explain(%q, %q, %q)\n got %q\nwant %q", tt.code, tt.reply, tt.lang, got, tt.want)
		}
	}
}
