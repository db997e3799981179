package ndr

import (
	"strconv"
	"strings"
)

// Enhanced status codes the module uses (RFC 3463, registry of RFC 5248).
// They are written with class 5 (permanent); use [Transient] for the class-4
// form of the same condition.
const (
	// StatusOK is 2.0.0, success (RFC 3463 §3.1).
	StatusOK = "2.0.0"
	// StatusDelivered is 2.1.5, "Destination address valid" (RFC 3463 §3.2).
	StatusDelivered = "2.1.5"
	// StatusBadMailbox is 5.1.1, "Bad destination mailbox address" (RFC 3463 §3.2).
	StatusBadMailbox = "5.1.1"
	// StatusNullMX is 5.1.10, "Recipient address has null MX" (RFC 7505 §4.2).
	StatusNullMX = "5.1.10"
	// StatusMailboxFull is 5.2.2, "Mailbox full" (RFC 3463 §3.3).
	StatusMailboxFull = "5.2.2"
	// StatusMessageTooBig is 5.3.4, "Message too big for system" (RFC 3463 §3.4).
	StatusMessageTooBig = "5.3.4"
	// StatusNoAnswer is 4.4.1, "No answer from host" (RFC 3463 §3.5); always transient.
	StatusNoAnswer = "4.4.1"
	// StatusBadConnection is 4.4.2, "Bad connection" (RFC 3463 §3.5); always transient.
	StatusBadConnection = "4.4.2"
	// StatusUnableToRoute is 5.4.4, "Unable to route" (RFC 3463 §3.5).
	StatusUnableToRoute = "5.4.4"
	// StatusExpired is 4.4.7, "Delivery time expired" (RFC 3463 §3.5). A report
	// for a message given up on after its queue lifetime uses 5.4.7.
	StatusExpired = "4.4.7"
	// StatusExpiredFailed is 5.4.7, the permanent form of [StatusExpired].
	StatusExpiredFailed = "5.4.7"
	// StatusSecurityOther is 5.7.0, "Other or undefined security status"
	// (RFC 3463 §3.8); also the code of "530 5.7.0 Must issue a STARTTLS
	// command first" (RFC 3207 §4).
	StatusSecurityOther = "5.7.0"
	// StatusNotAuthorized is 5.7.1, "Delivery not authorized, message refused"
	// (RFC 3463 §3.8).
	StatusNotAuthorized = "5.7.1"
	// StatusSTARTTLSRequired is 5.7.4, "Security features not supported"
	// (RFC 3463 §3.8): TLS was required but the peer did not offer STARTTLS.
	StatusSTARTTLSRequired = "5.7.4"
	// StatusCryptoFailure is 5.7.5, "Cryptographic failure" (RFC 3463 §3.8):
	// the TLS handshake or the certificate check failed.
	StatusCryptoFailure = "5.7.5"
	// StatusAuthInvalid is 5.7.8, "Authentication credentials invalid"
	// (RFC 4954 §6).
	StatusAuthInvalid = "5.7.8"
	// StatusEncryptionNeeded is 5.7.10, "Encryption Needed" (RFC 5248
	// registry; sent with reply 523 for AUTH without TLS).
	StatusEncryptionNeeded = "5.7.10"
	// StatusEncryptionRequiredForAuth is 5.7.11, "Encryption required for
	// requested authentication mechanism" (RFC 4954 §6, reply 538).
	StatusEncryptionRequiredForAuth = "5.7.11"
	// StatusREQUIRETLSRequired is 5.7.30, "REQUIRETLS support required"
	// (RFC 8689 §5).
	StatusREQUIRETLSRequired = "5.7.30"
)

type statusEntry struct{ en, ja string }

// statusCatalogue holds the registered meanings of subject.detail codes
// (RFC 3463 §3 and the IANA "Enumerated Status Codes" registry, RFC 5248),
// with a Japanese rendering.
var statusCatalogue = map[string]statusEntry{
	"0.0": {"Other undefined status", "その他の未定義の状態"},

	"1.0":  {"Other address status", "その他のアドレスの状態"},
	"1.1":  {"Bad destination mailbox address", "宛先メールボックスのアドレスが正しくありません"},
	"1.2":  {"Bad destination system address", "宛先システムのアドレスが正しくありません"},
	"1.3":  {"Bad destination mailbox address syntax", "宛先メールボックスのアドレスの書式が正しくありません"},
	"1.4":  {"Destination mailbox address ambiguous", "宛先メールボックスのアドレスが一意に定まりません"},
	"1.5":  {"Destination address valid", "宛先アドレスは有効です"},
	"1.6":  {"Destination mailbox has moved, No forwarding address", "宛先メールボックスは移転し、転送先がありません"},
	"1.7":  {"Bad sender's mailbox address syntax", "送信者のメールボックスのアドレスの書式が正しくありません"},
	"1.8":  {"Bad sender's system address", "送信者のシステムのアドレスが正しくありません"},
	"1.9":  {"Message relayed to non-compliant mailer", "配送通知に対応していないメールシステムへ中継されました"},
	"1.10": {"Recipient address has null MX", "宛先ドメインはメールを受け付けないこと（null MX）を公開しています"},

	"2.0": {"Other or undefined mailbox status", "その他の未定義のメールボックスの状態"},
	"2.1": {"Mailbox disabled, not accepting messages", "メールボックスが無効で、メッセージを受け付けていません"},
	"2.2": {"Mailbox full", "メールボックスが満杯です"},
	"2.3": {"Message length exceeds administrative limit", "メッセージの長さが管理上の上限を超えています"},
	"2.4": {"Mailing list expansion problem", "メーリングリストの展開で問題が発生しました"},

	"3.0": {"Other or undefined mail system status", "その他の未定義のメールシステムの状態"},
	"3.1": {"Mail system full", "メールシステムの容量が不足しています"},
	"3.2": {"System not accepting network messages", "システムがネットワークからのメッセージを受け付けていません"},
	"3.3": {"System not capable of selected features", "システムが指定された機能に対応していません"},
	"3.4": {"Message too big for system", "メッセージがシステムにとって大きすぎます"},
	"3.5": {"System incorrectly configured", "システムの設定に誤りがあります"},

	"4.0": {"Other or undefined network or routing status", "その他の未定義のネットワークまたは経路の状態"},
	"4.1": {"No answer from host", "相手先ホストから応答がありません"},
	"4.2": {"Bad connection", "接続に問題があります"},
	"4.3": {"Directory server failure", "ディレクトリサーバー（DNS など）の障害です"},
	"4.4": {"Unable to route", "配送経路を決定できません"},
	"4.5": {"Mail system congestion", "メールシステムが混雑しています"},
	"4.6": {"Routing loop detected", "配送経路のループを検出しました"},
	"4.7": {"Delivery time expired", "配送期限が切れました"},

	"5.0": {"Other or undefined protocol status", "その他の未定義のプロトコルの状態"},
	"5.1": {"Invalid command", "無効なコマンドです"},
	"5.2": {"Syntax error", "構文エラーです"},
	"5.3": {"Too many recipients", "宛先が多すぎます"},
	"5.4": {"Invalid command arguments", "コマンドの引数が無効です"},
	"5.5": {"Wrong protocol version", "プロトコルのバージョンが違います"},
	"5.6": {"Authentication Exchange line is too long", "認証のやり取りの行が長すぎます"},

	"6.0": {"Other or undefined media error", "その他の未定義のメディアのエラー"},
	"6.1": {"Media not supported", "メディアに対応していません"},
	"6.2": {"Conversion required and prohibited", "変換が必要ですが禁止されています"},
	"6.3": {"Conversion required but not supported", "変換が必要ですが対応していません"},
	"6.4": {"Conversion with loss performed", "情報の欠落を伴う変換が行われました"},
	"6.5": {"Conversion Failed", "変換に失敗しました"},
	"6.6": {"Message content not available", "メッセージの内容を取得できません"},
	"6.7": {"Non-ASCII addresses not permitted for that sender/recipient", "この送信者または宛先には ASCII 以外の文字を含むアドレスは使えません"},
	"6.8": {"UTF-8 string reply is required, but not permitted by the SMTP client", "UTF-8 の応答が必要ですが、SMTP クライアントが許可していません"},
	"6.9": {"UTF-8 header message cannot be transferred to one or more recipients, so the message must be rejected", "UTF-8 のヘッダーを含むメッセージを一部の宛先へ転送できないため、メッセージを拒否しました"},

	"7.0":  {"Other or undefined security status", "その他の未定義のセキュリティの状態"},
	"7.1":  {"Delivery not authorized, message refused", "配送が許可されず、メッセージは拒否されました"},
	"7.2":  {"Mailing list expansion prohibited", "メーリングリストの展開は禁止されています"},
	"7.3":  {"Security conversion required but not possible", "セキュリティのための変換が必要ですが、行えません"},
	"7.4":  {"Security features not supported", "必要なセキュリティ機能に対応していません"},
	"7.5":  {"Cryptographic failure", "暗号処理に失敗しました"},
	"7.6":  {"Cryptographic algorithm not supported", "暗号アルゴリズムに対応していません"},
	"7.7":  {"Message integrity failure", "メッセージの完全性の検証に失敗しました"},
	"7.8":  {"Authentication credentials invalid", "認証情報が正しくありません"},
	"7.9":  {"Authentication mechanism is too weak", "認証方式が弱すぎます"},
	"7.10": {"Encryption Needed", "暗号化が必要です"},
	"7.11": {"Encryption required for requested authentication mechanism", "要求された認証方式には暗号化が必要です"},
	"7.12": {"A password transition is needed", "パスワードの移行が必要です"},
	"7.13": {"User Account Disabled", "ユーザーアカウントが無効です"},
	"7.14": {"Trust relationship required", "信頼関係の設定が必要です"},
	"7.15": {"Priority Level is too low", "優先度が低すぎます"},
	"7.16": {"Message is too big for the specified priority", "指定された優先度に対してメッセージが大きすぎます"},
	"7.17": {"Mailbox owner has changed", "メールボックスの所有者が変わりました"},
	"7.18": {"Domain owner has changed", "ドメインの所有者が変わりました"},
	"7.19": {"RRVS test cannot be completed", "RRVS の検査を完了できません"},
	"7.20": {"No passing DKIM signature found", "検証に成功する DKIM 署名がありません"},
	"7.21": {"No acceptable DKIM signature found", "受け入れ可能な DKIM 署名がありません"},
	"7.22": {"No valid author-matched DKIM signature found", "差出人と一致する有効な DKIM 署名がありません"},
	"7.23": {"SPF validation failed", "SPF の検証に失敗しました"},
	"7.24": {"SPF validation error", "SPF の検証中にエラーが発生しました"},
	"7.25": {"Reverse DNS validation failed", "逆引き DNS の検証に失敗しました"},
	"7.26": {"Multiple authentication checks failed", "複数の認証検査に失敗しました"},
	"7.27": {"Sender address has null MX", "送信者のドメインは null MX を公開しています"},
	"7.28": {"Mail flood detected", "大量のメールの流入を検出しました"},
	"7.29": {"ARC validation failure", "ARC の検証に失敗しました"},
	"7.30": {"REQUIRETLS support required", "REQUIRETLS への対応が必要です"},
}

var subjectCatalogue = map[string]statusEntry{
	"0": {"Other or undefined status", "その他の未定義の状態"},
	"1": {"Addressing status", "アドレスの状態"},
	"2": {"Mailbox status", "メールボックスの状態"},
	"3": {"Mail system status", "メールシステムの状態"},
	"4": {"Network and routing status", "ネットワークと経路の状態"},
	"5": {"Mail delivery protocol status", "配送プロトコルの状態"},
	"6": {"Message content or media status", "メッセージの内容またはメディアの状態"},
	"7": {"Security or policy status", "セキュリティまたはポリシーの状態"},
}

// ParseStatus splits an enhanced status code "class.subject.detail"
// (RFC 3463 §2) into its three numbers. It reports false unless class is 2,
// 4 or 5, subject has 1 to 3 digits and detail 1 to 3 digits.
func ParseStatus(code string) (class, subject, detail int, ok bool) {
	parts := strings.Split(strings.TrimSpace(code), ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) {
			return 0, 0, 0, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, 0, 0, false
			}
		}
		n[i], _ = strconv.Atoi(p)
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return 0, 0, 0, false
	}
	return n[0], n[1], n[2], true
}

// StatusText returns the registered English meaning of an enhanced status
// code (RFC 3463 §3, RFC 5248 registry), such as "Security features not
// supported" for "5.7.4". The class does not change the meaning. An
// unregistered detail falls back to the meaning of its subject ("Security or
// policy status"); a malformed code gives "".
func StatusText(code string) string {
	return StatusTextLang(code, "en")
}

// StatusTextLang is [StatusText] in the language lang ("en" or "ja";
// anything else falls back to English).
func StatusTextLang(code, lang string) string {
	_, subject, detail, ok := ParseStatus(code)
	if !ok {
		return ""
	}
	ja := normalizeLanguage(lang) == "ja"
	key := strconv.Itoa(subject) + "." + strconv.Itoa(detail)
	e, found := statusCatalogue[key]
	if !found {
		e, found = subjectCatalogue[strconv.Itoa(subject)]
		if !found {
			return ""
		}
	}
	if ja {
		return e.ja
	}
	return e.en
}

// Transient returns code with its class changed to 4 (persistent transient
// failure, RFC 3463 §2), for reporting a delayed delivery with the same
// subject and detail. A malformed code is returned unchanged.
func Transient(code string) string {
	return withClass(code, "4")
}

// Permanent returns code with its class changed to 5 (permanent failure,
// RFC 3463 §2). A malformed code is returned unchanged.
func Permanent(code string) string {
	return withClass(code, "5")
}

func withClass(code, class string) string {
	if _, _, _, ok := ParseStatus(code); !ok {
		return code
	}
	code = strings.TrimSpace(code)
	return class + code[1:]
}
