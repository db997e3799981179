package ndr

import (
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/policy"
)

// Reason explains a TLS failure for the human-readable part of a report:
// which requirement failed, where, and which policy demanded it. It is not
// written in the delivery-status fields, which carry the Status and
// Diagnostic-Code instead.
type Reason struct {
	// Domain is the next-hop domain whose policy applied ("legacy.example").
	Domain string
	// MX is the host name of the server tried ("mx.legacy.example").
	MX string
	// Failure is the requirement that was not met.
	Failure policy.FailureType
	// Source is where the policy came from, "" if unknown.
	Source policy.Source
	// TLSVersion is the version negotiated ("TLS 1.0"), for policy.FailureTLSVersion.
	TLSVersion string
	// MinTLSVersion is the minimum the policy requires ("TLS 1.2").
	MinTLSVersion string
	// CertificateNames are the names in the server's certificate, for
	// policy.FailureCertificateHostMismatch.
	CertificateNames []string
	// Detail is optional technical detail, shown after the explanation.
	Detail string
}

// Explain returns the explanation of the failure in plain words, in lang
// ("en" or "ja"; anything else means English), ending with the assurance
// that nothing was sent in plaintext.
func (r *Reason) Explain(lang string) string {
	if normalizeLanguage(lang) == "ja" {
		return r.explainJA()
	}
	return r.explainEN()
}

func (r *Reason) explainEN() string {
	server := "the remote server"
	if r.MX != "" {
		server += " " + r.MX
	}
	Server := "T" + server[1:]
	pol := "the TLS policy"
	if r.Domain != "" {
		pol += " for " + r.Domain
	}
	switch r.Source {
	case "":
	case policy.SourceStatic:
		pol += " (from the static table)"
	case policy.SourceMTASTS:
		pol += " (published with MTA-STS)"
	case policy.SourceDANE:
		pol += " (from DANE TLSA records)"
	case policy.SourceREQUIRETLS:
		pol += " (set by the sender with REQUIRETLS)"
	case policy.SourceDefault:
		pol += " (the default for all destinations)"
	case policy.SourceRoute:
		pol += " (set for the route to the next hop)"
	default:
		pol += " (from " + string(r.Source) + ")"
	}
	domain := r.Domain
	if domain == "" {
		domain = "the recipient's domain"
	}
	var s string
	switch r.Failure {
	case policy.FailureSTARTTLSNotSupported:
		s = Server + " did not offer STARTTLS, while " + pol + " requires encryption."
	case policy.FailureCertificateHostMismatch:
		s = "The certificate of " + server + " does not match the server names that " + pol + " requires."
		if len(r.CertificateNames) > 0 {
			s += " The certificate is for: " + strings.Join(r.CertificateNames, ", ") + "."
		}
	case policy.FailureCertificateExpired:
		s = "The certificate of " + server + " has expired or is not yet valid, while " + pol + " requires a valid certificate."
	case policy.FailureCertificateNotTrusted:
		s = "The certificate of " + server + " was not issued by a trusted certificate authority, while " + pol + " requires a verified certificate."
	case policy.FailureValidation:
		s = "The certificate of " + server + " could not be verified as " + pol + " requires."
	case policy.FailureTLSAInvalid:
		s = "The certificate of " + server + " matches none of the DANE TLSA records published for it, which " + pol + " requires."
	case policy.FailureDNSSECInvalid:
		s = "The DNSSEC signatures of the DNS records for " + domain + " could not be validated, so " + pol + " could not be applied safely."
	case policy.FailureDANERequired:
		s = "No usable DANE TLSA records were found for " + server + ", while " + pol + " requires DANE."
	case policy.FailureSTSPolicyFetch:
		s = "The MTA-STS pol of " + domain + " could not be retrieved, so a secure delivery could not be ensured."
	case policy.FailureSTSPolicyInvalid:
		s = "The MTA-STS pol published by " + domain + " is invalid, so a secure delivery could not be ensured."
	case policy.FailureSTSWebPKIInvalid:
		s = "The HTTPS server publishing the MTA-STS pol of " + domain + " did not present a valid certificate, so the pol could not be trusted."
	case policy.FailureMXNotAllowed:
		s = Server + " is not one of the mail servers allowed by " + pol + ", so the message was not sent to it."
	case policy.FailureHandshake:
		s = "The TLS handshake with " + server + " failed, while " + pol + " requires encryption."
	case policy.FailureTLSVersion:
		ver := r.TLSVersion
		if ver == "" {
			ver = "an older TLS version"
		}
		if r.MinTLSVersion != "" {
			s = Server + " negotiated " + ver + ", below the minimum version " + r.MinTLSVersion + " that " + pol + " requires."
		} else {
			s = Server + " negotiated " + ver + ", below the minimum version that " + pol + " requires."
		}
	case policy.FailureWeakCipher:
		s = Server + " offered only ciphers weaker than " + pol + " allows."
	case policy.FailureREQUIRETLSNotSupported:
		s = "The message was sent with REQUIRETLS, but " + server + " does not support REQUIRETLS, so the message could not be passed on with that requirement intact."
	default:
		s = "A TLS requirement of " + pol + " could not be met when connecting to " + server + "."
	}
	s += " Nothing was sent in plaintext."
	if r.Detail != "" {
		s += " Technical detail: " + r.Detail
	}
	return s
}

func (r *Reason) explainJA() string {
	server := "相手先サーバー"
	if r.MX != "" {
		server += " " + r.MX + " "
	}
	pol := "TLS ポリシー"
	if r.Domain != "" {
		pol = r.Domain + " の " + pol
	}
	switch r.Source {
	case "":
	case policy.SourceStatic:
		pol += "（静的テーブルによる設定）"
	case policy.SourceMTASTS:
		pol += "（MTA-STS で公開されたもの）"
	case policy.SourceDANE:
		pol += "（DANE の TLSA レコードによるもの）"
	case policy.SourceREQUIRETLS:
		pol += "（送信者が REQUIRETLS で指定したもの）"
	case policy.SourceDefault:
		pol += "（すべての宛先に対する既定の設定）"
	case policy.SourceRoute:
		pol += "（ネクストホップへの経路に対する設定）"
	default:
		pol += "（" + string(r.Source) + " によるもの）"
	}
	domain := r.Domain
	if domain == "" {
		domain = "宛先ドメイン"
	} else {
		domain += " "
	}
	var s string
	switch r.Failure {
	case policy.FailureSTARTTLSNotSupported:
		s = server + "は STARTTLS を提供しませんでしたが、" + pol + "では暗号化が必須です。"
	case policy.FailureCertificateHostMismatch:
		s = server + "の証明書は、" + pol + "が求めるサーバー名と一致しませんでした。"
		if len(r.CertificateNames) > 0 {
			s += "証明書に記載された名前: " + strings.Join(r.CertificateNames, ", ") + "。"
		}
	case policy.FailureCertificateExpired:
		s = server + "の証明書は有効期限が切れているか、まだ有効になっていません。" + pol + "では有効な証明書が必要です。"
	case policy.FailureCertificateNotTrusted:
		s = server + "の証明書は信頼できる認証局が発行したものではありません。" + pol + "では検証済みの証明書が必要です。"
	case policy.FailureValidation:
		s = pol + "が求める方法で、" + server + "の証明書を検証できませんでした。"
	case policy.FailureTLSAInvalid:
		s = server + "の証明書は、公開されている DANE の TLSA レコードのいずれとも一致しませんでした。" + pol + "ではこの一致が必要です。"
	case policy.FailureDNSSECInvalid:
		s = domain + "の DNS レコードの DNSSEC 署名を検証できなかったため、" + pol + "を安全に適用できませんでした。"
	case policy.FailureDANERequired:
		s = server + "には利用できる DANE の TLSA レコードが見つかりませんでしたが、" + pol + "では DANE が必須です。"
	case policy.FailureSTSPolicyFetch:
		s = domain + "の MTA-STS ポリシーを取得できなかったため、安全な配送を保証できませんでした。"
	case policy.FailureSTSPolicyInvalid:
		s = domain + "が公開している MTA-STS ポリシーが不正なため、安全な配送を保証できませんでした。"
	case policy.FailureSTSWebPKIInvalid:
		s = domain + "の MTA-STS ポリシーを公開している HTTPS サーバーの証明書が有効でなかったため、ポリシーを信頼できませんでした。"
	case policy.FailureMXNotAllowed:
		s = server + "は" + pol + "で許可されたメールサーバーではないため、メッセージを送信しませんでした。"
	case policy.FailureHandshake:
		s = server + "との TLS ハンドシェイクに失敗しました。" + pol + "では暗号化が必須です。"
	case policy.FailureTLSVersion:
		ver := r.TLSVersion
		if ver == "" {
			ver = "古いバージョンの TLS"
		}
		if r.MinTLSVersion != "" {
			s = server + "との接続で使われた " + ver + " は、" + pol + "が求める最低バージョン " + r.MinTLSVersion + " を下回っています。"
		} else {
			s = server + "との接続で使われた " + ver + " は、" + pol + "が求める最低バージョンを下回っています。"
		}
	case policy.FailureWeakCipher:
		s = server + "が提示した暗号方式は、" + pol + "が求める強度に達していませんでした。"
	case policy.FailureREQUIRETLSNotSupported:
		s = "メッセージには REQUIRETLS が指定されていましたが、" + server + "は REQUIRETLS に対応していないため、この要件を保ったまま転送できませんでした。"
	default:
		s = server + "への接続で、" + pol + "の TLS の要件を満たせませんでした。"
	}
	s += "メッセージは平文では一切送信されていません。"
	if r.Detail != "" {
		s += "技術的な詳細: " + r.Detail
	}
	return s
}

type plainEntry struct{ en, ja string }

// plainSentences says in plain words what common status codes mean for the
// sender, keyed by "subject.detail".
var plainSentences = map[string]plainEntry{
	"1.1":  {"The recipient's address does not exist at the destination.", "宛先のメールアドレスは存在しません。"},
	"1.2":  {"The recipient's domain does not exist or cannot receive mail.", "宛先のドメインが存在しないか、メールを受信できません。"},
	"1.10": {"The recipient's domain has declared that it accepts no mail (null MX).", "宛先のドメインはメールを一切受け付けないこと（null MX）を宣言しています。"},
	"2.1":  {"The recipient's mailbox is disabled.", "宛先のメールボックスは無効になっています。"},
	"2.2":  {"The recipient's mailbox is full.", "宛先のメールボックスが満杯です。"},
	"2.3":  {"The message is too large for the recipient's mail system.", "メッセージが大きすぎるため、宛先のメールシステムで受け付けられません。"},
	"3.4":  {"The message is too large for the recipient's mail system.", "メッセージが大きすぎるため、宛先のメールシステムで受け付けられません。"},
	"4.1":  {"The recipient's mail server did not answer.", "宛先のメールサーバーから応答がありませんでした。"},
	"4.2":  {"The connection to the recipient's mail server was lost.", "宛先のメールサーバーとの接続が切れました。"},
	"4.4":  {"No mail server could be found for the recipient's domain.", "宛先のドメインのメールサーバーが見つかりませんでした。"},
	"4.7":  {"The message could not be delivered within the time allowed.", "所定の期間内にメッセージを配送できませんでした。"},
	"7.0":  {"The message could not be delivered for a security or pol reason.", "セキュリティまたはポリシー上の理由により配送できませんでした。"},
	"7.1":  {"The recipient's mail server refused the message by its pol.", "宛先のメールサーバーがポリシーによりメッセージを拒否しました。"},
	"7.4":  {"A required security feature, such as TLS encryption, was not available.", "TLS による暗号化など、必要なセキュリティ機能を利用できませんでした。"},
	"7.5":  {"Encryption or certificate verification failed.", "暗号化または証明書の検証に失敗しました。"},
	"7.10": {"Encryption is needed for this delivery.", "この配送には暗号化が必要です。"},
	"7.30": {"The message requires REQUIRETLS, which the next mail server does not support.", "メッセージには REQUIRETLS が指定されていますが、次のメールサーバーは REQUIRETLS に対応していません。"},
}

// Explain maps an enhanced status code and the server's reply to a sentence
// in plain words, in lang ("en" or "ja", default English): what the code
// means for the sender (RFC 3463 §3), followed by the reply quoted. It never
// returns only the raw reply.
func Explain(code, reply, lang string) string {
	ja := normalizeLanguage(lang) == "ja"
	class, subject, detail, ok := ParseStatus(code)
	var s string
	if ok {
		key := strconv.Itoa(subject) + "." + strconv.Itoa(detail)
		if p, found := plainSentences[key]; found && class != 2 {
			s = p.en
			if ja {
				s = p.ja
			}
		} else if class == 2 {
			s = "The message was delivered successfully."
			if ja {
				s = "メッセージは正常に配送されました。"
			}
		} else {
			t := StatusTextLang(code, lang)
			if ja {
				s = t + "（" + code + "）。"
			} else {
				s = t + " (" + code + ")."
			}
		}
	} else {
		s = "The message could not be delivered."
		if ja {
			s = "メッセージを配送できませんでした。"
		}
	}
	reply = strings.Join(strings.Fields(reply), " ")
	if reply != "" {
		if ja {
			s += "相手先サーバーの応答:「" + reply + "」"
		} else {
			s += " The remote server replied: \"" + reply + "\""
		}
	}
	return s
}

// normalizeLanguage reduces a language tag to a supported primary subtag.
func normalizeLanguage(lang string) string {
	lang = strings.ToLower(strings.TrimSpace(lang))
	if i := strings.IndexAny(lang, "-_"); i >= 0 {
		lang = lang[:i]
	}
	if lang == "ja" {
		return "ja"
	}
	return "en"
}
