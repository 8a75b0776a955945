"""Which functions a checked query may call.

Three lists, consulted in order:

1. a deny list (rule ``denied_function``): side effects, sleeps, file/network/LLM access,
   reflection and session introspection. Matched by sqlglot class for functions sqlglot
   models, and by name or name prefix for the ones it does not (``exp.Anonymous``);
2. a small per-dialect list of safe built-ins that sqlglot does not model by class;
3. an explicit allow list of sqlglot function classes (aggregates, window, math, string,
   date/time, conditional, casts, JSON). Any other known function is rejected
   (``function_not_allowed``), any other unknown one too (``unknown_function``).

Classes are matched exactly (``type(node) in ...``), never by subclass, so a dialect
subclass of an allowed function is not let through by accident.
"""

from __future__ import annotations

from sqlglot import exp


def _classes(names: str) -> frozenset[type[exp.Func]]:
    out = set()
    for name in names.split():
        cls = getattr(exp, name)  # AttributeError here means sqlglot renamed a class: fix the list
        if not (isinstance(cls, type) and issubclass(cls, exp.Func)):
            raise TypeError(f"{name} is not a sqlglot function class")
        out.add(cls)
    return frozenset(out)


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


AGGREGATES = _classes(
    """Count Sum Avg Min Max AnyValue ApproxDistinct ApproxQuantile ArgMax ArgMin ArrayAgg
    ArrayUniqueAgg Corr CountIf CovarPop CovarSamp First Last GroupConcat Grouping LogicalAnd
    LogicalOr Median Mode PercentileCont PercentileDisc Quantile Stddev StddevPop StddevSamp
    Variance VariancePop Kurtosis Skewness RegrSlope RegrIntercept RegrR2 RegrCount GroupingId"""
)
WINDOW = _classes(
    "RowNumber Rank DenseRank PercentRank CumeDist Ntile Lag Lead FirstValue LastValue NthValue"
)
MATH = _classes(
    """Abs Ceil Floor Round Trunc Sqrt Cbrt Exp Ln Log Pow Sign Pi SafeDivide SafeAdd
    SafeSubtract SafeMultiply Degrees Radians Sin Cos Tan Asin Acos Atan Atan2 IsNan IsInf
    Nanvl WidthBucket"""
)
STRING = _classes(
    """Concat ConcatWs Lower Upper Length Substring SubstringIndex Trim Left Right Replace Pad
    StrPosition Initcap Reverse Repeat Split RegexpSplit SplitPart StartsWith EndsWith Contains
    RegexpLike RegexpILike RegexpExtract RegexpReplace RegexpCount RegexpSubstr Translate
    Format ToChar ToNumber NumberToStr Ascii Chr MD5 SHA SHA2 Levenshtein"""
)
TEMPORAL = _classes(
    """CurrentDate CurrentTimestamp CurrentTime CurrentDatetime Localtimestamp Localtime Date
    DateAdd DateSub DateDiff DateTrunc DateBin TimestampTrunc TimestampAdd TimestampSub
    TimestampDiff DatetimeAdd DatetimeSub DatetimeDiff DatetimeTrunc TimeAdd TimeSub TimeDiff
    TimeTrunc TsOrDsAdd TsOrDsDiff TsOrDsToDate TsOrDsToTimestamp TimeToStr StrToDate
    StrToTime TimeStrToTime TimeStrToDate UnixToTime UnixToStr TimeToUnix StrToUnix UnixDate
    Extract Day DayOfMonth DayOfWeek DayOfWeekIso DayOfYear Hour Minute Second Month Quarter
    Week WeekOfYear Year AddMonths MonthsBetween LastDay NextDay MakeInterval DateFromParts
    TimestampFromParts ConvertTimezone Timestamp Dayname Monthname JustifyDays JustifyHours
    JustifyInterval UnixSeconds"""
)
CONDITIONAL = _classes(
    "Case If Coalesce Nullif Nvl2 Greatest Least Exists And Or DecodeCase EqualNull Typeof"
)
CASTS = _classes("Cast TryCast")
JSON = _classes(
    """JSONExtract JSONExtractScalar JSONBExtract JSONBExtractScalar JSONBContains
    JSONBContainsTopKey JSONBContainsAnyTopKeys JSONBContainsAllTopKeys ParseJSON
    FromJson JSONFormat JSONArrayAgg"""
)
ARRAYS = _classes(
    """Array ArrayContains ArrayContainsAll ArraySize ArrayToString ArraySort ArrayMax ArrayMin
    ArrayPosition ArrayIntersect ArrayExcept ArraySlice Flatten ArrayRemove ArrayAppend
    ArrayPrepend ArrayCompact ArrayDistinct VarMap Map MapKeys MapContainsKey StrToMap Struct
    Transform ArrayFilter Reduce"""
)

ALLOWED_FUNCTIONS: frozenset[type[exp.Func]] = (
    AGGREGATES | WINDOW | MATH | STRING | TEMPORAL | CONDITIONAL | CASTS | JSON | ARRAYS
)

DENIED_FUNCTIONS: frozenset[type[exp.Func]] = _classes(
    """CurrentUser CurrentUserId SessionUser CurrentRole CurrentRoleType CurrentVersion
    CurrentDatabase CurrentSchema CurrentSchemas CurrentCatalog CurrentAccount
    CurrentAccountName CurrentClient CurrentIpAddress CurrentSession CurrentStatement
    CurrentTransaction CurrentWarehouse CurrentOrganizationUser CurrentOrganizationName
    CurrentRegion CurrentAvailableRoles CurrentSecondaryRoles Secret ReadCSV ReadParquet ToFile
    AIClassify AIEmbed AIGenerate AIForecast AISimilarity AIAgg AISummarizeAgg Encrypt Decrypt
    EncryptRaw DecryptRaw NextValueFor"""
)

# Functions sqlglot only knows by name (exp.Anonymous), denied by exact name ...
DENIED_NAMES: frozenset[str] = _names(
    """sleep pg_sleep pg_sleep_for pg_sleep_until pg_read_file pg_read_binary_file pg_ls_dir
    pg_stat_file lo_import lo_export dblink dblink_exec reflect try_reflect java_method
    http_request ai_query ai_generate_text read_files read_kafka read_kinesis read_pubsub
    read_pulsar read_statestore cloud_files secret try_secret version current_user
    session_user user current_setting set_config nextval setval currval lastval
    query_to_xml table_to_xml cursor_to_xml schema_to_xml database_to_xml
    input_file_name input_file_block_start input_file_block_length current_metastore
    current_recipient is_member is_account_group_member
    identifier stream"""
)
# ... or by prefix (admin, large-object, dblink, LLM, reader and network families).
DENIED_PREFIXES: tuple[str, ...] = (
    "pg_",
    "lo_",
    "dblink",
    "ai_",
    "read_",
    "http",
    "java_",
    "txid_",
    "has_",
    "inet_",
    "vector_search",
)

# Safe built-ins sqlglot does not model, per dialect.
ANONYMOUS_ALLOWED: dict[str, frozenset[str]] = {
    "databricks": _names(
        "bround e every some format_number make_date date_part datepart weekday isnull isnotnull "
        "try_to_number try_to_timestamp try_avg try_sum octet_length btrim arrays_overlap "
        "array_union map_values printf pmod forall window hash timestamp_seconds timestamp_millis"
    ),
    "postgres": _names(
        "age jsonb_extract_path jsonb_extract_path_text jsonb_typeof json_typeof jsonb_build_object "
        "json_build_object to_jsonb to_json jsonb_array_length json_array_length isfinite every "
        "make_date octet_length cardinality"
    ),
}


def function_name(node: exp.Func) -> str:
    """A function's name as written (Anonymous) or its canonical SQL name."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def denied_name(name: str) -> bool:
    return name in DENIED_NAMES or name.startswith(DENIED_PREFIXES)


def classify(node: exp.Func, dialect: str) -> tuple[str, str] | None:
    """None if the call is allowed, else (rule, reason)."""
    cls = type(node)
    if cls in ALLOWED_FUNCTIONS:
        return None
    name = function_name(node)
    if cls is exp.Anonymous:
        if denied_name(name):
            return (
                "denied_function",
                f"function {name}() is not allowed (side effects, I/O or introspection)",
            )
        if name in ANONYMOUS_ALLOWED.get(dialect, frozenset()):
            return None
        return "unknown_function", f"function {name}() is not a known {dialect} function"
    if cls in DENIED_FUNCTIONS or denied_name(name):
        return (
            "denied_function",
            f"function {name}() is not allowed (side effects, I/O or introspection)",
        )
    return "function_not_allowed", f"function {name}() is not on the allowed function list"


# Databricks: the built-in names a query may call, as written. sqlglot's Databricks parser
# also accepts other engines' spellings (JSONB_CONTAINS, DATETIME_ADD, TS_OR_DS_TO_DATE, ...)
# and would re-render them as something Databricks runs, so SQL that Databricks itself
# would reject could run with a meaning nobody checked: a name sqlglot knows is admitted
# only from this list (`unknown_function`). Every name here has a query in the fidelity
# corpus (tests/fixtures/fidelity/corpus.sql) run on Spark and on the embedded warehouse.
DATABRICKS_NAMES: frozenset[str] = _names(
    """
    count sum avg min max any_value approx_count_distinct percentile percentile_approx
    approx_percentile percentile_cont percentile_disc median mode max_by min_by collect_list
    array_agg collect_set count_if bool_and bool_or stddev stddev_pop stddev_samp variance
    var_pop var_samp covar_pop covar_samp corr skewness kurtosis regr_slope regr_intercept
    regr_r2 regr_count grouping grouping_id first last try_avg try_sum every some
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value
    abs ceil ceiling floor round bround sqrt cbrt exp ln log log10 log2 pow power sign signum
    pi e degrees radians sin cos tan asin acos atan atan2 isnan nanvl width_bucket pmod mod
    try_divide try_add try_subtract try_multiply greatest least
    concat concat_ws lower lcase upper ucase length len char_length character_length
    octet_length substring substr substring_index trim ltrim rtrim btrim left right replace
    lpad rpad instr locate position initcap reverse repeat split split_part startswith
    endswith contains regexp_like rlike regexp_extract regexp_replace regexp_count
    regexp_substr translate format_string printf format_number to_char to_number
    try_to_number ascii chr char md5 sha sha1 sha2 hash levenshtein listagg string_agg
    current_date curdate current_timestamp now date_add date_sub dateadd add_months
    months_between datediff date_diff timestampadd timestampdiff date_trunc trunc to_date
    to_timestamp try_to_timestamp date_format unix_timestamp to_unix_timestamp from_unixtime
    unix_date extract date_part datepart year quarter month day dayofmonth dayofweek weekday
    dayofyear weekofyear hour minute second last_day next_day make_date make_timestamp
    dayname monthname timestamp_seconds timestamp_millis unix_seconds
    from_utc_timestamp to_utc_timestamp convert_timezone window
    if coalesce nvl ifnull nullif nvl2 isnull isnotnull exists decode equal_null typeof
    cast try_cast date timestamp string int double boolean
    get_json_object from_json to_json
    array size array_size array_contains array_join sort_array array_sort array_max array_min
    array_position arrays_overlap array_union array_intersect array_except slice flatten
    array_remove array_append array_prepend array_compact array_distinct element_at map
    map_keys map_values map_contains_key map_from_arrays str_to_map struct named_struct
    transform filter aggregate reduce forall explode posexplode explode_outer posexplode_outer
    """
)
