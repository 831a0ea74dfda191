//! Language codes. The public API accepts the short codes clients already use (BCP-47 tags and
//! ISO 639-1 codes such as `"vi"`, `"zh-TW"`, `"pt-BR"`) as well as the FLORES-200 codes NLLB
//! spells its languages with (`"vie_Latn"`); NLLB itself only understands the latter. This module
//! holds the table of the 202 languages NLLB-200 translates, each with its FLORES-200 code, a
//! canonical short code and an English name, and maps codes both ways: [`resolve`] turns whatever
//! a client sent into a table entry (or a helpful [`UnknownLanguage`] error), and the entry's
//! fields give the code to hand to the model and the code to show back to the client.
//!
//! Accepted forms, all case-insensitive, with `-` or `_` between subtags and surrounding
//! whitespace ignored:
//!
//! - the FLORES-200 code (`vie_Latn`) or the canonical short code (`vi`, `zh-Hant`, `ks-Deva`);
//! - a language subtag alone: an ISO 639-1 code (`vi`), an ISO 639-3 code (`vie`), a
//!   macrolanguage code (`ara`, `fas`, `kur`) or a legacy code (`iw`, `in`, `ji`, `jw`, `mo`).
//!   Where NLLB has several scripts or varieties of the language, the most widely used one is the
//!   default (`zh` is Simplified Chinese, `ar` Modern Standard Arabic, `ks` Kashmiri in Arabic
//!   script);
//! - a language subtag followed by a script subtag, a region subtag or both (`zh-Hant-TW`,
//!   `en-US`). An explicit script must be one NLLB has for the language (`sr-Latn` is unknown: NLLB
//!   only has Cyrillic Serbian). Without a script, a region only matters where it selects another
//!   variety NLLB has (`zh-TW`/`zh-HK`/`zh-MO` are Traditional Chinese, `fa-AF` is Dari, `az-IR`
//!   South Azerbaijani) and is otherwise ignored, but it never makes an unknown language known.
//!
//! Variant, extension and private-use subtags are not accepted.

/// One language NLLB-200 can translate from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Language {
    /// The FLORES-200 code, spelled as NLLB spells it (`"vie_Latn"`): ISO 639-3 language code,
    /// underscore, ISO 15924 script code. This is what the model is given.
    pub flores: &'static str,
    /// The canonical short code the API reports: the ISO 639-1 code when the language has one
    /// (`"vi"`), else the ISO 639-3 code (`"ace"`), plus a script subtag where NLLB has the
    /// language in several scripts (`"zh-Hans"`, `"ks-Deva"`).
    pub bcp47: &'static str,
    /// The English name (`"Vietnamese"`).
    pub name: &'static str,
}

impl Language {
    /// The ISO 639-3 part of the FLORES code (`"vie"`).
    fn iso639_3(&self) -> &'static str {
        self.flores
            .split_once('_')
            .map_or(self.flores, |(language, _)| language)
    }

    /// The ISO 15924 script part of the FLORES code (`"Latn"`).
    fn script(&self) -> &'static str {
        self.flores.split_once('_').map_or("", |(_, script)| script)
    }

    /// The language (first) subtag of the canonical short code (`"zh"` for `"zh-Hant"`).
    fn primary_subtag(&self) -> &'static str {
        self.bcp47
            .split_once('-')
            .map_or(self.bcp47, |(language, _)| language)
    }
}

/// Table-building helper, so that each language fits on one readable line.
const fn lang(flores: &'static str, bcp47: &'static str, name: &'static str) -> Language {
    Language {
        flores,
        bcp47,
        name,
    }
}

/// The 202 languages of NLLB-200, in the order of its vocabulary's language tokens.
pub static LANGUAGES: &[Language] = &[
    lang("ace_Arab", "ace-Arab", "Acehnese (Arabic script)"),
    lang("ace_Latn", "ace-Latn", "Acehnese (Latin script)"),
    lang("acm_Arab", "acm", "Mesopotamian Arabic"),
    lang("acq_Arab", "acq", "Ta'izzi-Adeni Arabic"),
    lang("aeb_Arab", "aeb", "Tunisian Arabic"),
    lang("afr_Latn", "af", "Afrikaans"),
    lang("ajp_Arab", "ajp", "South Levantine Arabic"),
    lang("aka_Latn", "ak", "Akan"),
    lang("amh_Ethi", "am", "Amharic"),
    lang("apc_Arab", "apc", "North Levantine Arabic"),
    lang("arb_Arab", "ar", "Modern Standard Arabic"),
    lang("ars_Arab", "ars", "Najdi Arabic"),
    lang("ary_Arab", "ary", "Moroccan Arabic"),
    lang("arz_Arab", "arz", "Egyptian Arabic"),
    lang("asm_Beng", "as", "Assamese"),
    lang("ast_Latn", "ast", "Asturian"),
    lang("awa_Deva", "awa", "Awadhi"),
    lang("ayr_Latn", "ay", "Central Aymara"),
    lang("azb_Arab", "azb", "South Azerbaijani"),
    lang("azj_Latn", "az", "North Azerbaijani"),
    lang("bak_Cyrl", "ba", "Bashkir"),
    lang("bam_Latn", "bm", "Bambara"),
    lang("ban_Latn", "ban", "Balinese"),
    lang("bel_Cyrl", "be", "Belarusian"),
    lang("bem_Latn", "bem", "Bemba"),
    lang("ben_Beng", "bn", "Bengali"),
    lang("bho_Deva", "bho", "Bhojpuri"),
    lang("bjn_Arab", "bjn-Arab", "Banjar (Arabic script)"),
    lang("bjn_Latn", "bjn-Latn", "Banjar (Latin script)"),
    lang("bod_Tibt", "bo", "Standard Tibetan"),
    lang("bos_Latn", "bs", "Bosnian"),
    lang("bug_Latn", "bug", "Buginese"),
    lang("bul_Cyrl", "bg", "Bulgarian"),
    lang("cat_Latn", "ca", "Catalan"),
    lang("ceb_Latn", "ceb", "Cebuano"),
    lang("ces_Latn", "cs", "Czech"),
    lang("cjk_Latn", "cjk", "Chokwe"),
    lang("ckb_Arab", "ckb", "Central Kurdish"),
    lang("crh_Latn", "crh", "Crimean Tatar"),
    lang("cym_Latn", "cy", "Welsh"),
    lang("dan_Latn", "da", "Danish"),
    lang("deu_Latn", "de", "German"),
    lang("dik_Latn", "dik", "Southwestern Dinka"),
    lang("dyu_Latn", "dyu", "Dyula"),
    lang("dzo_Tibt", "dz", "Dzongkha"),
    lang("ell_Grek", "el", "Greek"),
    lang("eng_Latn", "en", "English"),
    lang("epo_Latn", "eo", "Esperanto"),
    lang("est_Latn", "et", "Estonian"),
    lang("eus_Latn", "eu", "Basque"),
    lang("ewe_Latn", "ee", "Ewe"),
    lang("fao_Latn", "fo", "Faroese"),
    lang("pes_Arab", "fa", "Western Persian"),
    lang("fij_Latn", "fj", "Fijian"),
    lang("fin_Latn", "fi", "Finnish"),
    lang("fon_Latn", "fon", "Fon"),
    lang("fra_Latn", "fr", "French"),
    lang("fur_Latn", "fur", "Friulian"),
    lang("fuv_Latn", "ff", "Nigerian Fulfulde"),
    lang("gla_Latn", "gd", "Scottish Gaelic"),
    lang("gle_Latn", "ga", "Irish"),
    lang("glg_Latn", "gl", "Galician"),
    lang("grn_Latn", "gn", "Guarani"),
    lang("guj_Gujr", "gu", "Gujarati"),
    lang("hat_Latn", "ht", "Haitian Creole"),
    lang("hau_Latn", "ha", "Hausa"),
    lang("heb_Hebr", "he", "Hebrew"),
    lang("hin_Deva", "hi", "Hindi"),
    lang("hne_Deva", "hne", "Chhattisgarhi"),
    lang("hrv_Latn", "hr", "Croatian"),
    lang("hun_Latn", "hu", "Hungarian"),
    lang("hye_Armn", "hy", "Armenian"),
    lang("ibo_Latn", "ig", "Igbo"),
    lang("ilo_Latn", "ilo", "Ilocano"),
    lang("ind_Latn", "id", "Indonesian"),
    lang("isl_Latn", "is", "Icelandic"),
    lang("ita_Latn", "it", "Italian"),
    lang("jav_Latn", "jv", "Javanese"),
    lang("jpn_Jpan", "ja", "Japanese"),
    lang("kab_Latn", "kab", "Kabyle"),
    lang("kac_Latn", "kac", "Jingpho"),
    lang("kam_Latn", "kam", "Kamba"),
    lang("kan_Knda", "kn", "Kannada"),
    lang("kas_Arab", "ks-Arab", "Kashmiri (Arabic script)"),
    lang("kas_Deva", "ks-Deva", "Kashmiri (Devanagari script)"),
    lang("kat_Geor", "ka", "Georgian"),
    lang("knc_Arab", "kr-Arab", "Central Kanuri (Arabic script)"),
    lang("knc_Latn", "kr-Latn", "Central Kanuri (Latin script)"),
    lang("kaz_Cyrl", "kk", "Kazakh"),
    lang("kbp_Latn", "kbp", "Kabiyè"),
    lang("kea_Latn", "kea", "Kabuverdianu"),
    lang("khm_Khmr", "km", "Khmer"),
    lang("kik_Latn", "ki", "Kikuyu"),
    lang("kin_Latn", "rw", "Kinyarwanda"),
    lang("kir_Cyrl", "ky", "Kyrgyz"),
    lang("kmb_Latn", "kmb", "Kimbundu"),
    lang("kon_Latn", "kg", "Kikongo"),
    lang("kor_Hang", "ko", "Korean"),
    lang("kmr_Latn", "ku", "Northern Kurdish"),
    lang("lao_Laoo", "lo", "Lao"),
    lang("lvs_Latn", "lv", "Standard Latvian"),
    lang("lij_Latn", "lij", "Ligurian"),
    lang("lim_Latn", "li", "Limburgish"),
    lang("lin_Latn", "ln", "Lingala"),
    lang("lit_Latn", "lt", "Lithuanian"),
    lang("lmo_Latn", "lmo", "Lombard"),
    lang("ltg_Latn", "ltg", "Latgalian"),
    lang("ltz_Latn", "lb", "Luxembourgish"),
    lang("lua_Latn", "lua", "Luba-Kasai"),
    lang("lug_Latn", "lg", "Ganda"),
    lang("luo_Latn", "luo", "Luo"),
    lang("lus_Latn", "lus", "Mizo"),
    lang("mag_Deva", "mag", "Magahi"),
    lang("mai_Deva", "mai", "Maithili"),
    lang("mal_Mlym", "ml", "Malayalam"),
    lang("mar_Deva", "mr", "Marathi"),
    lang("min_Latn", "min", "Minangkabau"),
    lang("mkd_Cyrl", "mk", "Macedonian"),
    lang("plt_Latn", "mg", "Plateau Malagasy"),
    lang("mlt_Latn", "mt", "Maltese"),
    lang("mni_Beng", "mni", "Meitei (Bengali script)"),
    lang("khk_Cyrl", "mn", "Halh Mongolian"),
    lang("mos_Latn", "mos", "Mossi"),
    lang("mri_Latn", "mi", "Maori"),
    lang("zsm_Latn", "ms", "Standard Malay"),
    lang("mya_Mymr", "my", "Burmese"),
    lang("nld_Latn", "nl", "Dutch"),
    lang("nno_Latn", "nn", "Norwegian Nynorsk"),
    lang("nob_Latn", "nb", "Norwegian Bokmål"),
    lang("npi_Deva", "ne", "Nepali"),
    lang("nso_Latn", "nso", "Northern Sotho"),
    lang("nus_Latn", "nus", "Nuer"),
    lang("nya_Latn", "ny", "Nyanja"),
    lang("oci_Latn", "oc", "Occitan"),
    lang("gaz_Latn", "om", "West Central Oromo"),
    lang("ory_Orya", "or", "Odia"),
    lang("pag_Latn", "pag", "Pangasinan"),
    lang("pan_Guru", "pa", "Eastern Panjabi"),
    lang("pap_Latn", "pap", "Papiamento"),
    lang("pol_Latn", "pl", "Polish"),
    lang("por_Latn", "pt", "Portuguese"),
    lang("prs_Arab", "prs", "Dari"),
    lang("pbt_Arab", "ps", "Southern Pashto"),
    lang("quy_Latn", "qu", "Ayacucho Quechua"),
    lang("ron_Latn", "ro", "Romanian"),
    lang("run_Latn", "rn", "Rundi"),
    lang("rus_Cyrl", "ru", "Russian"),
    lang("sag_Latn", "sg", "Sango"),
    lang("san_Deva", "sa", "Sanskrit"),
    lang("sat_Beng", "sat", "Santali"),
    lang("scn_Latn", "scn", "Sicilian"),
    lang("shn_Mymr", "shn", "Shan"),
    lang("sin_Sinh", "si", "Sinhala"),
    lang("slk_Latn", "sk", "Slovak"),
    lang("slv_Latn", "sl", "Slovenian"),
    lang("smo_Latn", "sm", "Samoan"),
    lang("sna_Latn", "sn", "Shona"),
    lang("snd_Arab", "sd", "Sindhi"),
    lang("som_Latn", "so", "Somali"),
    lang("sot_Latn", "st", "Southern Sotho"),
    lang("spa_Latn", "es", "Spanish"),
    lang("als_Latn", "sq", "Tosk Albanian"),
    lang("srd_Latn", "sc", "Sardinian"),
    lang("srp_Cyrl", "sr", "Serbian"),
    lang("ssw_Latn", "ss", "Swati"),
    lang("sun_Latn", "su", "Sundanese"),
    lang("swe_Latn", "sv", "Swedish"),
    lang("swh_Latn", "sw", "Swahili"),
    lang("szl_Latn", "szl", "Silesian"),
    lang("tam_Taml", "ta", "Tamil"),
    lang("tat_Cyrl", "tt", "Tatar"),
    lang("tel_Telu", "te", "Telugu"),
    lang("tgk_Cyrl", "tg", "Tajik"),
    lang("tgl_Latn", "tl", "Tagalog"),
    lang("tha_Thai", "th", "Thai"),
    lang("tir_Ethi", "ti", "Tigrinya"),
    lang("taq_Latn", "taq-Latn", "Tamasheq (Latin script)"),
    lang("taq_Tfng", "taq-Tfng", "Tamasheq (Tifinagh script)"),
    lang("tpi_Latn", "tpi", "Tok Pisin"),
    lang("tsn_Latn", "tn", "Tswana"),
    lang("tso_Latn", "ts", "Tsonga"),
    lang("tuk_Latn", "tk", "Turkmen"),
    lang("tum_Latn", "tum", "Tumbuka"),
    lang("tur_Latn", "tr", "Turkish"),
    lang("twi_Latn", "tw", "Twi"),
    lang("tzm_Tfng", "tzm", "Central Atlas Tamazight"),
    lang("uig_Arab", "ug", "Uyghur"),
    lang("ukr_Cyrl", "uk", "Ukrainian"),
    lang("umb_Latn", "umb", "Umbundu"),
    lang("urd_Arab", "ur", "Urdu"),
    lang("uzn_Latn", "uz", "Northern Uzbek"),
    lang("vec_Latn", "vec", "Venetian"),
    lang("vie_Latn", "vi", "Vietnamese"),
    lang("war_Latn", "war", "Waray"),
    lang("wol_Latn", "wo", "Wolof"),
    lang("xho_Latn", "xh", "Xhosa"),
    lang("ydd_Hebr", "yi", "Eastern Yiddish"),
    lang("yor_Latn", "yo", "Yoruba"),
    lang("yue_Hant", "yue", "Cantonese"),
    lang("zho_Hans", "zh-Hans", "Chinese (Simplified)"),
    lang("zho_Hant", "zh-Hant", "Chinese (Traditional)"),
    lang("zul_Latn", "zu", "Zulu"),
];

/// Language subtags whose entries are not simply "every entry whose FLORES code or canonical
/// short code starts with this subtag, in table order": macrolanguage, legacy and alternative
/// codes, and multi-script languages whose most used script is not the first in the table.
/// Each maps to the FLORES codes it may mean, the default (used when no script is given) first.
static EXTRA_CODES: &[(&str, &[&str])] = &[
    // Several scripts; the default is the one most text is written in.
    ("ace", &["ace_Latn", "ace_Arab"]),
    ("bjn", &["bjn_Latn", "bjn_Arab"]),
    ("kr", &["knc_Latn", "knc_Arab"]),
    ("knc", &["knc_Latn", "knc_Arab"]),
    ("kau", &["knc_Latn", "knc_Arab"]),
    ("tmh", &["taq_Latn", "taq_Tfng"]),
    // Macrolanguages whose members NLLB has in different scripts: `az-Arab`, `ku-Arab`.
    ("az", &["azj_Latn", "azb_Arab"]),
    ("aze", &["azj_Latn", "azb_Arab"]),
    ("ku", &["kmr_Latn", "ckb_Arab"]),
    ("kur", &["kmr_Latn", "ckb_Arab"]),
    // ISO 639-3 macrolanguage codes for the member NLLB has (or its default member).
    ("ara", &["arb_Arab"]),
    ("aym", &["ayr_Latn"]),
    ("cmn", &["zho_Hans", "zho_Hant"]),
    ("ekk", &["est_Latn"]),
    ("fas", &["pes_Arab", "prs_Arab"]),
    ("ful", &["fuv_Latn"]),
    ("lav", &["lvs_Latn"]),
    ("mlg", &["plt_Latn"]),
    ("mon", &["khk_Cyrl"]),
    ("msa", &["zsm_Latn"]),
    ("nep", &["npi_Deva"]),
    ("nor", &["nob_Latn"]),
    ("ori", &["ory_Orya"]),
    ("orm", &["gaz_Latn"]),
    ("pus", &["pbt_Arab"]),
    ("que", &["quy_Latn"]),
    ("sqi", &["als_Latn"]),
    ("swa", &["swh_Latn"]),
    ("uzb", &["uzn_Latn"]),
    ("yid", &["ydd_Hebr"]),
    // Other codes clients send: generic Norwegian, Filipino, and deprecated ISO 639-1 codes.
    ("no", &["nob_Latn"]),
    ("fil", &["tgl_Latn"]),
    ("iw", &["heb_Hebr"]),
    ("in", &["ind_Latn"]),
    ("ji", &["ydd_Hebr"]),
    ("jw", &["jav_Latn"]),
    ("mo", &["ron_Latn"]),
];

/// Regions that select another variety than a language's default when no script is given:
/// (default FLORES code, region subtag in lower case, FLORES code used instead).
static REGIONAL_VARIANTS: &[(&str, &str, &str)] = &[
    ("zho_Hans", "tw", "zho_Hant"),
    ("zho_Hans", "hk", "zho_Hant"),
    ("zho_Hans", "mo", "zho_Hant"),
    ("pes_Arab", "af", "prs_Arab"),
    ("azj_Latn", "ir", "azb_Arab"),
];

/// How many characters of an unknown code [`UnknownLanguage`] keeps.
const MAX_ECHOED_CHARS: usize = 32;

/// A language code [`resolve`] does not recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown language code {code:?}: use an ISO 639-1/BCP-47 code such as \"en\" or \"vi\", or a FLORES-200 code such as \"vie_Latn\" (GET /v1/languages lists them)"
)]
pub struct UnknownLanguage {
    /// The code as given, truncated to 32 characters.
    pub code: String,
}

impl UnknownLanguage {
    fn new(code: &str) -> Self {
        Self {
            code: code.chars().take(MAX_ECHOED_CHARS).collect(),
        }
    }
}

/// Finds the language a client-supplied code means. See the [module documentation](self) for
/// the accepted forms.
///
/// ```
/// use voxbridge_shared::languages::resolve;
///
/// assert_eq!(resolve("vi")?.flores, "vie_Latn");
/// assert_eq!(resolve("zh-TW")?.flores, "zho_Hant");
/// assert_eq!(resolve("eng_Latn")?.bcp47, "en");
/// assert!(resolve("klingon").is_err());
/// # Ok::<(), voxbridge_shared::languages::UnknownLanguage>(())
/// ```
pub fn resolve(code: &str) -> Result<&'static Language, UnknownLanguage> {
    lookup(code.trim()).ok_or_else(|| UnknownLanguage::new(code))
}

/// The entry with exactly this FLORES-200 code (case-sensitive, as NLLB spells it).
pub fn by_flores(code: &str) -> Option<&'static Language> {
    LANGUAGES.iter().find(|language| language.flores == code)
}

/// The work of [`resolve`], on a trimmed code.
fn lookup(code: &str) -> Option<&'static Language> {
    let tag = Tag::parse(code)?;
    let candidates = candidates(tag.language);
    let default = *candidates.first()?;
    match (tag.script, tag.region) {
        (Some(script), _) => {
            if default.script().eq_ignore_ascii_case(script) {
                Some(default)
            } else {
                candidates
                    .into_iter()
                    .find(|language| language.script().eq_ignore_ascii_case(script))
            }
        }
        (None, Some(region)) => Some(regional_variant(default, region).unwrap_or(default)),
        (None, None) => Some(default),
    }
}

/// The entries a language subtag may mean, its default first; empty if it means none.
fn candidates(subtag: &str) -> Vec<&'static Language> {
    if let Some((_, floreses)) = EXTRA_CODES
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(subtag))
    {
        return floreses
            .iter()
            .filter_map(|flores| by_flores(flores))
            .collect();
    }
    LANGUAGES
        .iter()
        .filter(|language| {
            language.iso639_3().eq_ignore_ascii_case(subtag)
                || language.primary_subtag().eq_ignore_ascii_case(subtag)
        })
        .collect()
}

/// The variety `region` selects instead of `default`, if any.
fn regional_variant(default: &Language, region: &str) -> Option<&'static Language> {
    REGIONAL_VARIANTS
        .iter()
        .find(|(from, in_region, _)| {
            *from == default.flores && in_region.eq_ignore_ascii_case(region)
        })
        .and_then(|(_, _, to)| by_flores(to))
}

/// The subtags of a well-formed `language[-script][-region]` tag (with `-` or `_` separators).
#[derive(Debug)]
struct Tag<'a> {
    /// 2 or 3 letters.
    language: &'a str,
    /// 4 letters.
    script: Option<&'a str>,
    /// 2 letters or 3 digits.
    region: Option<&'a str>,
}

impl<'a> Tag<'a> {
    fn parse(code: &'a str) -> Option<Self> {
        let mut subtags = code.split(['-', '_']).peekable();
        let language = subtags
            .next()
            .filter(|s| (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic()))?;
        let script =
            subtags.next_if(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic()));
        let region = subtags.next_if(|s| {
            (s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()))
                || (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        });
        if subtags.next().is_some() {
            return None;
        }
        Some(Self {
            language,
            script,
            region,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;

    /// Whether `token` has the shape of a FLORES-200 code: `xxx_Xxxx`.
    fn is_flores_code(token: &str) -> bool {
        let b = token.as_bytes();
        b.len() == 8
            && b[..3].iter().all(u8::is_ascii_lowercase)
            && b[3] == b'_'
            && b[4].is_ascii_uppercase()
            && b[5..].iter().all(u8::is_ascii_lowercase)
    }

    fn flores_of(code: &str) -> &'static str {
        resolve(code)
            .unwrap_or_else(|e| panic!("{code:?} should resolve: {e}"))
            .flores
    }

    #[test]
    fn table_has_202_well_formed_unique_codes() {
        assert_eq!(LANGUAGES.len(), 202);
        let mut flores = HashSet::new();
        let mut bcp47 = HashSet::new();
        for language in LANGUAGES {
            assert!(is_flores_code(language.flores), "{language:?}");
            assert!(!language.name.is_empty(), "{language:?}");
            assert!(flores.insert(language.flores), "duplicate {language:?}");
            assert!(
                bcp47.insert(language.bcp47.to_ascii_lowercase()),
                "duplicate {language:?}"
            );
            let tag = Tag::parse(language.bcp47).expect("canonical codes are well-formed tags");
            assert!(tag.region.is_none(), "{language:?}");
            if let Some(script) = tag.script {
                assert_eq!(script, language.script(), "{language:?}");
            }
        }
    }

    #[test]
    fn every_code_in_the_table_resolves_to_its_own_entry() {
        for language in LANGUAGES {
            let flores = language.flores;
            let bcp47 = language.bcp47;
            for code in [
                flores.to_owned(),
                flores.to_ascii_uppercase(),
                flores.to_ascii_lowercase(),
                flores.replace('_', "-"),
                bcp47.to_owned(),
                bcp47.to_ascii_uppercase(),
                bcp47.replace('-', "_"),
                format!(" {bcp47}\t"),
            ] {
                assert_eq!(resolve(&code), Ok(language), "{code:?}");
            }
            assert_eq!(by_flores(flores), Some(language));
        }
    }

    #[test]
    fn every_iso639_3_code_and_primary_subtag_resolves_to_a_variety_of_it() {
        for language in LANGUAGES {
            for code in [language.iso639_3(), language.primary_subtag()] {
                let found = resolve(code).expect("language subtags resolve");
                assert!(
                    found.iso639_3() == language.iso639_3() || candidates(code).contains(&language),
                    "{code:?} gave {found:?}"
                );
            }
        }
    }

    #[test]
    fn extra_codes_are_consistent() {
        let mut seen = HashSet::new();
        for (code, floreses) in EXTRA_CODES {
            assert!(seen.insert(code.to_ascii_lowercase()), "duplicate {code:?}");
            assert_eq!(code.to_ascii_lowercase(), *code);
            assert!(!floreses.is_empty(), "{code:?}");
            for flores in *floreses {
                assert!(by_flores(flores).is_some(), "{code:?}: no {flores:?}");
            }
            // An override must not hide an entry the code would otherwise mean.
            for language in LANGUAGES
                .iter()
                .filter(|l| l.iso639_3() == *code || l.primary_subtag().eq_ignore_ascii_case(code))
            {
                assert!(
                    floreses.contains(&language.flores),
                    "{code:?} hides {language:?}"
                );
            }
        }
        for (from, region, to) in REGIONAL_VARIANTS {
            assert!(by_flores(from).is_some() && by_flores(to).is_some());
            assert_eq!(region.to_ascii_lowercase(), *region);
        }
    }

    #[test]
    fn vietnamese_in_every_spelling() {
        for code in [
            "vi", "VI", "vie_Latn", "VIE_LATN", "vie-latn", "vie", " vi ", "vi-VN", "vi_vn",
        ] {
            assert_eq!(flores_of(code), "vie_Latn", "{code:?}");
        }
    }

    #[test]
    fn tags_with_script_and_region() {
        for (code, flores) in [
            ("en-US", "eng_Latn"),
            ("en_GB", "eng_Latn"),
            ("en-Latn-US", "eng_Latn"),
            ("es-419", "spa_Latn"),
            ("pt-BR", "por_Latn"),
            ("zh", "zho_Hans"),
            ("zho", "zho_Hans"),
            ("zh-CN", "zho_Hans"),
            ("zh-SG", "zho_Hans"),
            ("zh-TW", "zho_Hant"),
            ("zh-HK", "zho_Hant"),
            ("zh-MO", "zho_Hant"),
            ("zh-Hant", "zho_Hant"),
            ("zh-Hans-TW", "zho_Hans"),
            ("zh-Hant-TW", "zho_Hant"),
            ("zh-Hant-CN", "zho_Hant"),
            ("cmn-Hant", "zho_Hant"),
            ("yue", "yue_Hant"),
            ("yue-HK", "yue_Hant"),
            ("fa-AF", "prs_Arab"),
            ("fa-IR", "pes_Arab"),
            ("az-IR", "azb_Arab"),
            ("az-Arab", "azb_Arab"),
            ("az-AZ", "azj_Latn"),
            ("ku-Arab", "ckb_Arab"),
            ("ks-Deva", "kas_Deva"),
            ("ks-IN", "kas_Arab"),
            ("ace", "ace_Latn"),
            ("ace-Arab", "ace_Arab"),
            ("knc", "knc_Latn"),
            ("kr_Arab", "knc_Arab"),
            ("sr-RS", "srp_Cyrl"),
            ("sr-Cyrl", "srp_Cyrl"),
        ] {
            assert_eq!(flores_of(code), flores, "{code:?}");
        }
    }

    #[test]
    fn bare_codes_default_to_the_most_used_variety() {
        for (code, flores) in [
            ("zh", "zho_Hans"),
            ("ar", "arb_Arab"),
            ("ara", "arb_Arab"),
            ("sr", "srp_Cyrl"),
            ("ms", "zsm_Latn"),
            ("fa", "pes_Arab"),
            ("no", "nob_Latn"),
            ("nb", "nob_Latn"),
            ("nn", "nno_Latn"),
            ("uz", "uzn_Latn"),
            ("et", "est_Latn"),
            ("lv", "lvs_Latn"),
            ("sq", "als_Latn"),
            ("mn", "khk_Cyrl"),
            ("ku", "kmr_Latn"),
            ("az", "azj_Latn"),
            ("ps", "pbt_Arab"),
            ("qu", "quy_Latn"),
            ("om", "gaz_Latn"),
            ("mg", "plt_Latn"),
            ("sw", "swh_Latn"),
            ("ne", "npi_Deva"),
            ("or", "ory_Orya"),
            ("yi", "ydd_Hebr"),
            ("gn", "grn_Latn"),
            ("ks", "kas_Arab"),
            ("ff", "fuv_Latn"),
            ("he", "heb_Hebr"),
            ("iw", "heb_Hebr"),
            ("tl", "tgl_Latn"),
            ("fil", "tgl_Latn"),
            ("in", "ind_Latn"),
            ("eng", "eng_Latn"),
            ("tw", "twi_Latn"),
            ("ak", "aka_Latn"),
            ("taq", "taq_Latn"),
            ("bjn", "bjn_Latn"),
        ] {
            assert_eq!(flores_of(code), flores, "{code:?}");
        }
    }

    #[test]
    fn unknown_codes_are_errors_naming_the_code() {
        for code in [
            "xx",
            "",
            "   ",
            "klingon",
            "eng_Latnx",
            "eng_Latn_",
            "xx-US",
            "sr-Latn",
            "zh-Latn",
            "en-US-POSIX",
            "en-x-private",
            "en--US",
            "e",
            "-en",
            "tlh",
            "und",
        ] {
            let err = resolve(code).expect_err(code);
            assert_eq!(
                err,
                UnknownLanguage {
                    code: code.to_owned()
                }
            );
            assert!(err.to_string().contains(&format!("{code:?}")), "{err}");
        }
    }

    #[test]
    fn unknown_code_is_truncated_in_the_error() {
        let long = "é".repeat(100);
        let err = resolve(&long).expect_err("not a language");
        assert_eq!(err.code.chars().count(), 32);
        assert!(long.starts_with(&err.code));
    }

    #[test]
    fn by_flores_is_exact() {
        assert_eq!(by_flores("vie_Latn").map(|l| l.bcp47), Some("vi"));
        assert_eq!(by_flores("VIE_LATN"), None);
        assert_eq!(by_flores("vi"), None);
    }

    /// The table must list exactly the language tokens of the NLLB vocabulary, in order. Needs
    /// the model mirror (`$VOXBRIDGE_MODEL_MIRROR`, default `shared/models` next to the
    /// workspace); skipped when it is absent.
    #[test]
    fn table_matches_the_nllb_vocabulary() {
        let mirror = std::env::var_os("VOXBRIDGE_MODEL_MIRROR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models"),
            PathBuf::from,
        );
        let path = mirror.join("nllb-tiny/int8/shared_vocabulary.json");
        if !path.is_file() {
            eprintln!("skipped: {} not found", path.display());
            return;
        }
        let text = std::fs::read_to_string(&path).expect("vocabulary is readable");
        let vocabulary: Vec<String> =
            serde_json::from_str(&text).expect("vocabulary is a JSON array of strings");
        let from_vocabulary: Vec<&str> = vocabulary
            .iter()
            .map(String::as_str)
            .filter(|token| is_flores_code(token))
            .collect();
        let from_table: Vec<&str> = LANGUAGES.iter().map(|l| l.flores).collect();
        assert_eq!(from_table, from_vocabulary);
    }
}
