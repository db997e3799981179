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
	w := &wordingEN
	if normalizeLanguage(lang) == "ja" {
		w = &wordingJA
	}
	return w.explain(r)
}

// wording is one language's text of Reason.Explain. Templates name what
// they quote in braces: {server} ("the remote server mx.example"),
// {Server} (the same at the start of a sentence), {policy} ("the TLS
// policy for example.org (published with MTA-STS)"), {domain}, {version}
// and {min} (TLS versions).
type wording struct {
	server        string                        // the server, before " " and its name
	serverAfter   string                        // after its name
	policy        string                        // the policy, without a domain
	policyFor     string                        // with {domain}
	sources       map[policy.Source]string      // appended to the policy
	otherSource   string                        // with {source}
	someDomain    string                        // {domain} when unknown
	domainAfter   string                        // after a known domain
	failures      map[policy.FailureType]string // the sentence per failure
	fallback      string                        // for any other failure
	tlsVersionMin string                        // FailureTLSVersion with MinTLSVersion
	olderTLS      string                        // {version} when unknown
	certNames     string                        // FailureCertificateHostMismatch, with {names}
	plaintext     string                        // the closing assurance
	detail        string                        // before Detail
}

func (w *wording) explain(r *Reason) string {
	server := w.server
	if r.MX != "" {
		server += " " + r.MX + w.serverAfter
	}
	pol := w.policy
	if r.Domain != "" {
		pol = strings.ReplaceAll(w.policyFor, "{domain}", r.Domain)
	}
	if r.Source != "" {
		src, ok := w.sources[r.Source]
		if !ok {
			src = strings.ReplaceAll(w.otherSource, "{source}", string(r.Source))
		}
		pol += src
	}
	domain := w.someDomain
	if r.Domain != "" {
		domain = r.Domain + w.domainAfter
	}
	ver := r.TLSVersion
	if ver == "" {
		ver = w.olderTLS
	}
	tmpl, ok := w.failures[r.Failure]
	switch {
	case !ok:
		tmpl = w.fallback
	case r.Failure == policy.FailureTLSVersion && r.MinTLSVersion != "":
		tmpl = w.tlsVersionMin
	}
	s := strings.NewReplacer("{server}", server, "{Server}", capitalize(server), "{policy}", pol,
		"{domain}", domain, "{version}", ver, "{min}", r.MinTLSVersion).Replace(tmpl)
	if r.Failure == policy.FailureCertificateHostMismatch && len(r.CertificateNames) > 0 {
		s += strings.ReplaceAll(w.certNames, "{names}", strings.Join(r.CertificateNames, ", "))
	}
	s += w.plaintext
	if r.Detail != "" {
		s += w.detail + r.Detail
	}
	return s
}

// capitalize upper-cases an ASCII first letter.
func capitalize(s string) string {
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

var wordingEN = wording{
	server:    "the remote server",
	policy:    "the TLS policy",
	policyFor: "the TLS policy for {domain}",
	sources: map[policy.Source]string{
		policy.SourceStatic:     " (from the static table)",
		policy.SourceMTASTS:     " (published with MTA-STS)",
		policy.SourceDANE:       " (from DANE TLSA records)",
		policy.SourceREQUIRETLS: " (set by the sender with REQUIRETLS)",
		policy.SourceDefault:    " (the default for all destinations)",
		policy.SourceRoute:      " (set for the route to the next hop)",
	},
	otherSource: " (from {source})",
	someDomain:  "the recipient's domain",
	failures: map[policy.FailureType]string{
		policy.FailureSTARTTLSNotSupported:    "{Server} did not offer STARTTLS, while {policy} requires encryption.",
		policy.FailureCertificateHostMismatch: "The certificate of {server} does not match the server names that {policy} requires.",
		policy.FailureCertificateExpired:      "The certificate of {server} has expired or is not yet valid, while {policy} requires a valid certificate.",
		policy.FailureCertificateNotTrusted:   "The certificate of {server} was not issued by a trusted certificate authority, while {policy} requires a verified certificate.",
		policy.FailureValidation:              "The certificate of {server} could not be verified as {policy} requires.",
		policy.FailureTLSAInvalid:             "The certificate of {server} matches none of the DANE TLSA records published for it, which {policy} requires.",
		policy.FailureDNSSECInvalid:           "The DNSSEC signatures of the DNS records for {domain} could not be validated, so {policy} could not be applied safely.",
		policy.FailureDANERequired:            "No usable DANE TLSA records were found for {server}, while {policy} requires DANE.",
		policy.FailureSTSPolicyFetch:          "The MTA-STS policy of {domain} could not be retrieved, so a secure delivery could not be ensured.",
		policy.FailureSTSPolicyInvalid:        "The MTA-STS policy published by {domain} is invalid, so a secure delivery could not be ensured.",
		policy.FailureSTSWebPKIInvalid:        "The HTTPS server publishing the MTA-STS policy of {domain} did not present a valid certificate, so the policy could not be trusted.",
		policy.FailureMXNotAllowed:            "{Server} is not one of the mail servers allowed by {policy}, so the message was not sent to it.",
		policy.FailureHandshake:               "The TLS handshake with {server} failed, while {policy} requires encryption.",
		policy.FailureTLSVersion:              "{Server} negotiated {version}, below the minimum version that {policy} requires.",
		policy.FailureWeakCipher:              "{Server} offered only ciphers weaker than {policy} allows.",
		policy.FailureREQUIRETLSNotSupported:  "The message was sent with REQUIRETLS, but {server} does not support REQUIRETLS, so the message could not be passed on with that requirement intact.",
	},
	fallback:      "A TLS requirement of {policy} could not be met when connecting to {server}.",
	tlsVersionMin: "{Server} negotiated {version}, below the minimum version {min} that {policy} requires.",
	olderTLS:      "an older TLS version",
	certNames:     " The certificate is for: {names}.",
	plaintext:     " Nothing was sent in plaintext.",
	detail:        " Technical detail: ",
}

var wordingJA = wording{
	server:      "相手先サーバー",
	serverAfter: " ",
	policy:      "TLS ポリシー",
	policyFor:   "{domain} の TLS ポリシー",
	sources: map[policy.Source]string{
		policy.SourceStatic:     "（静的テーブルによる設定）",
		policy.SourceMTASTS:     "（MTA-STS で公開されたもの）",
		policy.SourceDANE:       "（DANE の TLSA レコードによるもの）",
		policy.SourceREQUIRETLS: "（送信者が REQUIRETLS で指定したもの）",
		policy.SourceDefault:    "（すべての宛先に対する既定の設定）",
		policy.SourceRoute:      "（ネクストホップへの経路に対する設定）",
	},
	otherSource: "（{source} によるもの）",
	someDomain:  "宛先ドメイン",
	domainAfter: " ",
	failures: map[policy.FailureType]string{
		policy.FailureSTARTTLSNotSupported:    "{server}は STARTTLS を提供しませんでしたが、{policy}では暗号化が必須です。",
		policy.FailureCertificateHostMismatch: "{server}の証明書は、{policy}が求めるサーバー名と一致しませんでした。",
		policy.FailureCertificateExpired:      "{server}の証明書は有効期限が切れているか、まだ有効になっていません。{policy}では有効な証明書が必要です。",
		policy.FailureCertificateNotTrusted:   "{server}の証明書は信頼できる認証局が発行したものではありません。{policy}では検証済みの証明書が必要です。",
		policy.FailureValidation:              "{policy}が求める方法で、{server}の証明書を検証できませんでした。",
		policy.FailureTLSAInvalid:             "{server}の証明書は、公開されている DANE の TLSA レコードのいずれとも一致しませんでした。{policy}ではこの一致が必要です。",
		policy.FailureDNSSECInvalid:           "{domain}の DNS レコードの DNSSEC 署名を検証できなかったため、{policy}を安全に適用できませんでした。",
		policy.FailureDANERequired:            "{server}には利用できる DANE の TLSA レコードが見つかりませんでしたが、{policy}では DANE が必須です。",
		policy.FailureSTSPolicyFetch:          "{domain}の MTA-STS ポリシーを取得できなかったため、安全な配送を保証できませんでした。",
		policy.FailureSTSPolicyInvalid:        "{domain}が公開している MTA-STS ポリシーが不正なため、安全な配送を保証できませんでした。",
		policy.FailureSTSWebPKIInvalid:        "{domain}の MTA-STS ポリシーを公開している HTTPS サーバーの証明書が有効でなかったため、ポリシーを信頼できませんでした。",
		policy.FailureMXNotAllowed:            "{server}は{policy}で許可されたメールサーバーではないため、メッセージを送信しませんでした。",
		policy.FailureHandshake:               "{server}との TLS ハンドシェイクに失敗しました。{policy}では暗号化が必須です。",
		policy.FailureTLSVersion:              "{server}との接続で使われた {version} は、{policy}が求める最低バージョンを下回っています。",
		policy.FailureWeakCipher:              "{server}が提示した暗号方式は、{policy}が求める強度に達していませんでした。",
		policy.FailureREQUIRETLSNotSupported:  "メッセージには REQUIRETLS が指定されていましたが、{server}は REQUIRETLS に対応していないため、この要件を保ったまま転送できませんでした。",
	},
	fallback:      "{server}への接続で、{policy}の TLS の要件を満たせませんでした。",
	tlsVersionMin: "{server}との接続で使われた {version} は、{policy}が求める最低バージョン {min} を下回っています。",
	olderTLS:      "古いバージョンの TLS",
	certNames:     "証明書に記載された名前: {names}。",
	plaintext:     "メッセージは平文では一切送信されていません。",
	detail:        "技術的な詳細: ",
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
	"7.0":  {"The message could not be delivered for a security or policy reason.", "セキュリティまたはポリシー上の理由により配送できませんでした。"},
	"7.1":  {"The recipient's mail server refused the message by its policy.", "宛先のメールサーバーがポリシーによりメッセージを拒否しました。"},
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
