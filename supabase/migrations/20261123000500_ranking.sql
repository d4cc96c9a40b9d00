-- Full-text ranking (issue 13). Idempotent (`create or replace`);
-- the Postgres and Supabase backends call the same functions, so both rank alike,
-- and the hybrid search inherits the ranking through its full-text list.
--
-- The base score is ts_rank x (summed IDF)^2: squaring the IDF sum favours a
-- chunk that holds more of the question's rare words over one that repeats a
-- common one; the body text weighs a little more against titles than
-- Postgres's default weights ({0.2, 0.3, 0.5, 1.0} for D, C, B, A). It is then
-- multiplied by:
--   * title coverage: 1 + share of the page title's words that the question uses
--     ("what is the DEX" prefers the page "DEX" to "DEX Fee Structure");
--   * the opening of a page: 1.6 for a page's first chunk, where pages say what
--     they are about (2x when the question asks what something is);
--   * a definition: 10x when the question asks "what is/are X" and the chunk has a
--     sentence that starts with X followed by "is a/an/the/...", "means" ... ("A
--     vault is similar to ..."); 30x when the chunk opens with it.
-- Further:
--   * kb_normalise_query: what users type for the test network ("test dfi",
--     "test coins", "test net") becomes "testnet", the word the pages use (as
--     tools/knowledge.py SPELLINGS does);
--   * kb_definition_pattern: a term is also defined where a sentence names it
--     ("... are known commonly as dTokens", "... is called a vault");
--   * kb_text_search: a question asking when ("when did ...", "what year ...")
--     ranks a chunk that holds a year 3x higher, 9x when the year follows one
--     of the question's less common words in the same sentence ("launched on
--     April 26th, 2020");
--   * kb_text_search: "what is X" where X is several words ranks a chunk that
--     holds X as a phrase 3x higher ("the community fund" over "a community
--     development fund").
-- Before the lexemes are taken, a few spellings users type are joined into the
-- word the pages use ("back up" -> "backup").

-- The question with the spellings users type replaced by the pages' words.
create or replace function public.kb_normalise_query(query text)
returns text
language sql immutable parallel safe
as $$
    select regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        regexp_replace(query,
        '\m(back)(ing|ed)?\s+up\M', 'backup', 'gi'),
        '\m(set)(ting)?\s+up\M', 'setup', 'gi'),
        '\m(log)(ging|ged)?\s+in\M', 'login', 'gi'),
        '\mmaster\s+nodes?\M', 'masternode', 'gi'),
        '\mtest(ing)?[\s-]+net(work)?\M', 'testnet', 'gi'),
        '\mtest\s+(dfi|coins?|tokens?|funds?)\M', 'testnet \1', 'gi')
$$;


-- For "what is X?" / "what are X?" / "define X" / "X meaning": a regular
-- expression that finds a sentence defining X, else null.
create or replace function public.kb_definition_pattern(query text)
returns text
language plpgsql immutable parallel safe
as $$
declare
    subject text;
begin
    subject := substring(lower(query) from
        '^\s*(?:what(?:''s|s|\s+is|\s+are)|define|explain)\s+(?:an?\s+|the\s+)?(.+?)[\s?.!]*$');
    if subject is null then
        subject := substring(lower(query) from '^\s*(.+?)\s+(?:meaning|definition)[\s?.!]*$');
    end if;
    if subject is null or length(subject) > 40 or subject ~ '\m(i|my|you|do|does|to|how|why)\M' then
        return null;
    end if;
    subject := regexp_replace(subject, 's$', '');  -- "vaults" also finds "vault"
    subject := regexp_replace(subject, '([^[:alnum:][:space:]])', '\\\1', 'g');
    subject := regexp_replace(subject, '\s+', '[\s-]+', 'g');
    return '(^|[.!?:]\s+|\n)[^[:alnum:]]*(the\s+|an?\s+)?' || subject
        || 's?[^[:alnum:]\s]*\s*(\([^)]*\)\s*)?((is|are)\s+(a|an|the|one|short|similar|like|called|'
        || 'known)|means|refers to|stands for|describes)\M'
        || '|\m(known|called|referred\s+to)\s+((commonly|simply|also)\s+)?(as\s+)?(the\s+|an?\s+)?'
        || subject || 's?\M';
end
$$;


create or replace function public.kb_text_search(query text, kb text, k int default 5)
returns table (id bigint, content text, metadata jsonb, score double precision)
language plpgsql stable
as $$
declare
    n double precision;
    terms tsquery[];
    weights double precision[];
    lexemes text[];
    definition text := public.kb_definition_pattern(query);
    normal text := public.kb_normalise_query(query);
    asks_when boolean := query ~* '^\s*when\M|\mwhat\s+(year|date|day)\M|\msince\s+when\M';
    dated text;  -- for "when": a question word and a year in one sentence
    -- for "what is X" where X is two or more words: X as a phrase ("community fund")
    phrase text := substring(lower(query) from
        '^\s*(?:what(?:''s|s|\s+is|\s+are)|define|explain)\s+(?:an?\s+|the\s+)?([[:alnum:]]+(?:\s+[[:alnum:]]+){1,3}?)s?[\s?.!]*$');
begin
    if to_tsvector('english'::regconfig, normal) = ''::tsvector then
        return;  -- only stop words: nothing to look for
    end if;
    select coalesce(sum(d.chunks), 0) into n from public.kb_documents d where d.kb = kb_text_search.kb;
    select array_agg(('''' || replace(replace(l.lexeme, '\', '\\'), '''', '''''') || '''')::tsquery),
           array_agg(ln((n + 1) / (coalesce(l.freq * n, 1) + 0.5))),
           array_agg(l.lexeme)
    into terms, weights, lexemes
    from public.kb_query_lexemes(normal) l;
    if phrase is not null then
        phrase := '\m' || regexp_replace(phrase, '\s+', '[\s-]+', 'g') || 's?\M';
    end if;
    if asks_when then
        select '\m(' || string_agg(regexp_replace(l.lexeme, '\W', '', 'g'), '|')
               || ')\w*[^.!?\n]{0,80}\m(19|20)\d\d\M'
        into dated
        from public.kb_query_lexemes(normal) l
        where coalesce(l.freq, 0) < 0.05 and l.lexeme ~ '^\w{3,}$';  -- not the kb's everyday words
    end if;
    return query execute $sql$
        with candidates as (
            select c.id, c.content, c.metadata, c.tsv,
                   (select coalesce(sum(t.w), 0) from unnest($6, $7) as t(q, w)
                    where c.tsv @@ t.q) as idf,
                   tsvector_to_array(ts_filter(c.tsv, '{a}')) as title
            from public.kb_chunks c
            where c.kb = $1 and (c.tsv @@ $2 or c.tsv @@ $3)
            limit 5000  -- bounds the ranking work when every word is common
        ),
        scored as (
            select c.id, c.content, c.metadata,
                   ts_rank('{0.2, 0.3, 0.5, 1.0}', c.tsv, $4, 1) * c.idf * c.idf
                   * (1 + coalesce((select count(*) from unnest(c.title) l where l = any($8))::double precision
                                   / nullif(cardinality(c.title), 0), 0))
                   * case when (c.metadata ->> 'chunk') = '0'
                          then case when $9 is null then 1.6 else 2.0 end else 1 end
                   * case when $9 is null or c.content !~* $9 then 1
                          when left(c.content, 200) ~* $9 then 30.0 else 10.0 end
                   * case when not $10 or c.content !~* '\m(19|20)\d\d\M' then 1
                          when $11 is not null and c.content ~* $11 then 9.0 else 3.0 end
                   * case when $12 is not null and c.content ~* $12 then 3.0 else 1 end as score
            from candidates c
        )
        select s.id, s.content, s.metadata, s.score::double precision
        from scored s
        order by s.score desc, s.id
        limit $5
    $sql$
    using kb, public.kb_selective_words(normal, kb), plainto_tsquery('english'::regconfig, normal),
          public.kb_any_words(normal), k, terms, weights, lexemes, definition,
          asks_when, dated, phrase;
end
$$;
